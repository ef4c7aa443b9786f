"""The denoiser networks of the diffusion family, chosen by name (`config.model.backbone`).

  "unet"    DDPM's U-Net (Ho et al. 2020; genjax/nn/unet.py): ch, ch_mult, num_res_blocks,
            attn_resolutions, dropout, num_heads
  "ddpmpp"  DDPM++ (Song et al. 2021) as EDM's training/networks.py builds it (SongUNet with a
            positional time embedding and the standard encoder; genjax/nn/song_unet.py)
  "ncsnpp"  NCSN++ likewise (Fourier time features, the residual encoder, [1,3,3,1] resampling)
  "adm"     the ADM U-Net (Dhariwal and Nichol 2021, openai/guided-diffusion) with scale-shift
            norm, as the flow-matching code trains it on CIFAR-10 (genjax/nn/adm_unet.py)
  "dit"     the Diffusion Transformer (Peebles and Xie 2023; genjax/nn/dit.py): patch_size,
            hidden_size, depth, num_heads, mlp_ratio

Every backbone is a Flax module with the same call, `(x_BxHxWxC, t_B, label_B=None, train=False,
augment_BxA=None) -> f32[B,H,W,C']`, so that every formulation (ddpm, edm, flow) drives every
backbone: t_B is whatever the formulation feeds (DDPM's step index, EDM's c_noise, 999 t for a
flow), label_B the class with num_classes as the null label of classifier-free guidance. The U-Net
fields (ch, ch_mult, num_res_blocks, attn_resolutions, dropout, num_heads) are shared by the
four U-Nets, each reading them as its own base width, multipliers, blocks per level, attention
sizes (feature-map heights), dropout and heads.
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from genjax.errors import ConfigError

BACKBONES = ("unet", "ddpmpp", "ncsnpp", "adm", "dit")
U_NETS = ("unet", "ddpmpp", "ncsnpp", "adm")

# EDM's train.py: --arch=ddpmpp and --arch=ncsnpp differ only in these SongUNet arguments.
SONG_VARIANTS = {
  "ddpmpp": dict(embedding_type="positional", channel_mult_noise=1, encoder_type="standard", resample_filter=(1, 1)),
  "ncsnpp": dict(embedding_type="fourier", channel_mult_noise=2, encoder_type="residual", resample_filter=(1, 3, 3, 1)),
}


def check(cfg, info) -> None:
  """ConfigError, before anything compiles, for a backbone setting that cannot work on info.shape."""
  if cfg.backbone not in BACKBONES:
    raise ConfigError(f"config.model.backbone = {cfg.backbone!r} is not one of {', '.join(BACKBONES)}.")
  H, W, C = info.shape
  if cfg.backbone in U_NETS:
    levels = len(cfg.ch_mult)
    if H % 2 ** (levels - 1) or W % 2 ** (levels - 1):
      raise ConfigError(
        f"config.model.ch_mult={cfg.ch_mult} halves {H}x{W} images {levels - 1} times, which does not "
        f"divide them; use fewer levels (e.g. --config.model.ch_mult=1,2,2 for 28x28)."
      )
    if cfg.ch <= 0 or cfg.ch % 32:
      raise ConfigError(f"config.model.ch = {cfg.ch} must be a positive multiple of 32 (GroupNorm uses 32 groups).")
  if cfg.backbone in SONG_VARIANTS and cfg.num_heads != 1:
    raise ConfigError(
      f"config.model.num_heads = {cfg.num_heads}: the {cfg.backbone} backbone attends with one head, as "
      "EDM's SongUNet does; leave num_heads at 1 (or use backbone unet, adm or dit)."
    )
  if not 0 <= cfg.augment_p <= 1:
    raise ConfigError(f"config.model.augment_p = {cfg.augment_p} must lie in [0, 1] (EDM's CIFAR-10: 0.12).")
  if cfg.backbone not in SONG_VARIANTS and cfg.augment_p:
    raise ConfigError(
      f"config.model.augment_p = {cfg.augment_p}: EDM's augmentation is non-leaky only when its labels "
      f"condition the network, which EDM's SongUNet does and the {cfg.backbone} backbone does not; "
      "set augment_p to 0 or use backbone ddpmpp / ncsnpp."
    )
  if cfg.backbone == "adm" and cfg.num_head_channels is not None:
    widths = sorted({cfg.ch * m for m in cfg.ch_mult})
    if cfg.num_head_channels <= 0 or any(w % cfg.num_head_channels for w in widths):
      raise ConfigError(
        f"config.model.num_head_channels = {cfg.num_head_channels} must divide every level's width "
        f"({', '.join(map(str, widths))}); pick a divisor such as 64 or 32, or None for num_heads heads."
      )
  if cfg.backbone == "dit":
    p = cfg.patch_size
    if p < 1 or H % p or W % p:
      raise ConfigError(
        f"config.model.patch_size = {p} does not divide the {H}x{W} images; pick a divisor of both "
        "(DiT uses 2, 4 or 8 on 32x32 latents)."
      )
    if cfg.hidden_size <= 0 or cfg.num_heads <= 0 or cfg.hidden_size % cfg.num_heads:
      raise ConfigError(
        f"config.model.hidden_size = {cfg.hidden_size} must split evenly into num_heads = {cfg.num_heads} "
        "heads (DiT-S: 384 and 6, B: 768 and 12, L: 1024 and 16, XL: 1152 and 16)."
      )
    if cfg.depth < 1 or cfg.mlp_ratio <= 0:
      raise ConfigError(f"config.model.depth = {cfg.depth} and mlp_ratio = {cfg.mlp_ratio} must be positive.")


def augment_dim(cfg) -> int:
  """The augmentation labels the network takes: EDM's 9 with augmentation, else none."""
  from genjax.families.diffusion import augment

  return augment.label_dim(augment_config(cfg)) if cfg.augment_p > 0 else 0


def augment_config(cfg):
  """EDM's augmentation pipe of EDM's CIFAR-10 setting (train.py) at probability augment_p."""
  from genjax.families.diffusion import augment

  return augment.AugmentConfig(p=cfg.augment_p)


def make(cfg, info, num_classes: Optional[int], dtype=jnp.float32) -> nn.Module:
  """The backbone module of `cfg` for images of info.shape (out channels: the image's)."""
  learned = cfg.variance == "learned_range"  # the prediction's channels, then the variance's
  C = info.shape[-1]
  common = dict(
    out_ch=C * (2 if learned and cfg.backbone != "dit" else 1), num_classes=num_classes, dtype=jnp.dtype(dtype)
  )
  if cfg.backbone == "unet":
    from genjax.nn.unet import UNet

    return UNet(
      ch=cfg.ch,
      ch_mult=cfg.ch_mult,
      num_res_blocks=cfg.num_res_blocks,
      attn_resolutions=cfg.attn_resolutions,
      dropout=cfg.dropout,
      num_heads=cfg.num_heads,
      **common,
    )
  if cfg.backbone in SONG_VARIANTS:
    from genjax.nn.song_unet import SongUNet

    return SongUNet(
      model_channels=cfg.ch,
      channel_mult=cfg.ch_mult,
      num_blocks=cfg.num_res_blocks,
      attn_resolutions=cfg.attn_resolutions,
      dropout=cfg.dropout,
      augment_dim=augment_dim(cfg),
      **SONG_VARIANTS[cfg.backbone],
      **common,
    )
  if cfg.backbone == "adm":
    from genjax.nn.adm_unet import ADMUNet

    return ADMUNet(
      model_channels=cfg.ch,
      channel_mult=cfg.ch_mult,
      num_res_blocks=cfg.num_res_blocks,
      attn_resolutions=cfg.attn_resolutions,
      dropout=cfg.dropout,
      num_heads=cfg.num_heads,
      num_head_channels=cfg.num_head_channels,
      resblock_updown=cfg.resblock_updown,
      conv_resample=cfg.conv_resample,
      **common,
    )
  from genjax.nn.dit import DiT

  return DiT(
    patch_size=cfg.patch_size,
    hidden_size=cfg.hidden_size,
    depth=cfg.depth,
    num_heads=cfg.num_heads,
    mlp_ratio=cfg.mlp_ratio,
    learn_sigma=learned,  # DiT doubles out_ch itself
    **common,
  )


def describe(cfg) -> str:
  """One phrase naming the backbone and its size fields, for run notes."""
  if cfg.backbone == "dit":
    return f"DiT patch {cfg.patch_size} hidden {cfg.hidden_size} depth {cfg.depth} heads {cfg.num_heads}"
  names = {"unet": "DDPM U-Net", "ddpmpp": "DDPM++ (SongUNet)", "ncsnpp": "NCSN++ (SongUNet)", "adm": "ADM U-Net"}
  return f"{names[cfg.backbone]} ch={cfg.ch} mult={cfg.ch_mult}"
