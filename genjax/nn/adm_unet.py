"""The ADM U-Net (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis"), as a
Flax Linen module, in the form the flow-matching authors train it on CIFAR-10 and ImageNet.

Source: facebookresearch/flow_matching, examples/image/models/unet.py (UNetModel, ResBlock,
AttentionBlock, QKVAttention, Downsample, Upsample), itself openai/guided-diffusion's
guided_diffusion/unet.py, with nn.py's GroupNorm32 and timestep_embedding. The defaults are the
"cifar10" entry of examples/image/models/model_configs.py (FID 2.07 in the repository's README):
model_channels 128, channel_mult (2, 2, 2), 4 residual blocks a level, attention at 16x16, dropout
0.3, one head, FiLM-style (scale-shift) conditioning, average-pool / nearest-neighbour resampling;
55,676,419 parameters on 32x32x3 images, as many as the reference. Its "imagenet" entry is
ADMUNet(model_channels=192, channel_mult=(1, 2, 3, 4), num_res_blocks=3, attn_resolutions=(32, 16, 8)
on 64x64, dropout=0.1, num_head_channels=64, resblock_updown=True, num_classes=1000).

The layer order, shapes and numerics follow the reference:
  - time embedding: t enters `timestep_embedding` exactly as the caller gives it (no rescaling;
    cosines first, frequencies exp(-ln(10^4) i / half)), then Linear -> SiLU -> Linear to
    4 * model_channels. The flow-matching code feeds t in [0, 1] straight in (its training loop
    calls model(x_t, t) with t ~ U[0, 1] or a skewed law on [1e-4, 1]), so passing t in [0, 1] gives
    the authors' model; guided-diffusion fed integer steps 0..999 to the same embedding.
  - residual blocks: GN -> SiLU -> conv3x3, the embedding through SiLU -> Linear to a (1 + scale,
    shift) pair applied after the second GN (or added before it without use_scale_shift_norm),
    SiLU -> dropout -> conv3x3, and a 1x1 shortcut when the width changes. With resblock_updown the
    resampling blocks are residual blocks that pool / repeat both branches after the first SiLU.
  - attention: GN -> 1x1 qkv -> multi-head softmax attention over the H*W positions -> 1x1 out,
    residual. Heads are num_head_channels wide if that is set, else there are num_heads of them.
    The qkv channels are split in the "new" order (q | k | v, then heads), the order of every
    flow-matching config (use_new_attention_order=True); guided-diffusion's legacy order is a
    permutation of the qkv weights, which `variables_from_torch_state_dict` applies when asked.
  - zero-initialised layers (zero_module): the last conv of every residual block, every attention
    output projection and the output conv, so a fresh model outputs exactly 0.
  - GroupNorm(32 groups, eps 1e-5) computes its statistics and affine transform in float32
    (GroupNorm32) and casts back; everything else computes in `dtype`, parameters are float32.
  - class labels: an embedding table of num_classes + 1 rows added to the time embedding. Row
    num_classes is the "null" label of classifier-free guidance; as in the reference (an
    nn.Embedding with padding_idx=num_classes, the same num_classes + 1 rows) it starts at zero and
    receives no gradient, so "no label" adds nothing. label_B=None on a conditional model means the
    null label for the whole batch, as the reference does when the label is missing.

Differences from the reference: NHWC layout; `attn_resolutions` lists feature-map sizes (genjax's
convention) where the reference's attention_resolutions lists downsample rates (cifar10's [2] at 32x32
is (16,) here); initialisation other than the zero layers is PyTorch's default, drawn by Flax
(variance_scaling(1/3, fan_in, uniform) kernels and U(+-1/sqrt(fan_in)) biases: the same laws, not
the same numbers); options the flow-matching configs never set are left out: with_fourier_features
(refused), 1-D/3-D inputs, ignore_time, input_projection=False, concat_conditioning, gradient
checkpointing (use jax.checkpoint around the apply instead) and num_heads_upsample (always num_heads).
"""

import math
from typing import Any, Dict, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors
from genjax.nn.conv import Conv
from genjax.nn.norm import Dropout

# PyTorch's default init for nn.Linear and nn.Conv*: kaiming_uniform_(a=sqrt(5)) kernels, which is
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)) = variance_scaling(1/3, fan_in, uniform), and biases drawn
# from the same interval.
_torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
_zeros = nn.initializers.zeros
_GROUPS = 32


def _torch_bias_init(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def timestep_embedding(t_B: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """guided-diffusion's sinusoidal embedding of the real times t_B: f32[B, dim], cos(t * f_i) in the
  first half and sin(t * f_i) in the second, f_i = exp(-ln(max_period) * i / half) for
  i < half = dim // 2, and a zero column when dim is odd. (genjax.nn.embeddings.sinusoidal_embedding
  is DDPM's: sines first and a divisor of half - 1.)"""
  half = dim // 2
  freqs_H = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles_BxH = jnp.asarray(t_B, jnp.float32)[:, None] * freqs_H[None, :]
  emb_BxD = jnp.concatenate([jnp.cos(angles_BxH), jnp.sin(angles_BxH)], axis=-1)
  if dim % 2:
    emb_BxD = jnp.concatenate([emb_BxD, jnp.zeros_like(emb_BxD[:, :1])], axis=-1)
  return emb_BxD


def _group_norm(x, name: str):
  """GroupNorm32: 32 groups, eps 1e-5, statistics and affine in float32, cast back to x's dtype."""
  y = nn.GroupNorm(num_groups=_GROUPS, epsilon=1e-5, dtype=jnp.float32, name=name)(x.astype(jnp.float32))
  return y.astype(x.dtype)


def _conv(x_BxHxWxC, features: int, name: str, dtype, kernel: int = 3, stride: int = 1, zero: bool = False):
  """PyTorch's Conv2d(C, features, kernel, stride, padding=kernel // 2): explicit symmetric padding
  (Flax's "SAME" pads a stride-2 layer on one side only)."""
  fan_in = x_BxHxWxC.shape[-1] * kernel * kernel
  pad = kernel // 2
  return Conv(
    features,
    (kernel, kernel),
    strides=stride,
    padding=((pad, pad), (pad, pad)),
    dtype=dtype,
    kernel_init=_zeros if zero else _torch_kernel_init,
    bias_init=_zeros if zero else _torch_bias_init(fan_in),
    name=name,
  )(x_BxHxWxC)


def _dense(x_BxD, features: int, name: str, dtype, zero: bool = False):
  """PyTorch's Linear (or a 1x1 Conv1d) with its default, or zero, initialisation."""
  return nn.Dense(
    features,
    dtype=dtype,
    kernel_init=_zeros if zero else _torch_kernel_init,
    bias_init=_zeros if zero else _torch_bias_init(x_BxD.shape[-1]),
    name=name,
  )(x_BxD)


def _downsample(x_BxHxWxC):
  """AvgPool2d(2): x_BxHxWxC -> [B, H/2, W/2, C]."""
  return nn.avg_pool(x_BxHxWxC, (2, 2), strides=(2, 2))


def _upsample(x_BxHxWxC):
  """Nearest-neighbour x2 (F.interpolate(scale_factor=2, mode="nearest")): -> [B, 2H, 2W, C]."""
  return jnp.repeat(jnp.repeat(x_BxHxWxC, 2, axis=1), 2, axis=2)


class Downsample(nn.Module):
  """Downsample with conv_resample: a 3x3 stride-2 conv, padding 1 ("op"). x_BxHxWxC -> [B, H/2, W/2, C]."""

  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    return _conv(x_BxHxWxC, x_BxHxWxC.shape[-1], "op", self.dtype, stride=2)


class Upsample(nn.Module):
  """Upsample with conv_resample: nearest x2, then a 3x3 conv ("conv"). x_BxHxWxC -> [B, 2H, 2W, C]."""

  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    return _conv(_upsample(x_BxHxWxC), x_BxHxWxC.shape[-1], "conv", self.dtype)


class ResBlock(nn.Module):
  """The reference's ResBlock (parameter names are its state_dict's): x_BxHxWxC, emb_BxE ->
  f[B, H', W', out_ch], H' = 2H with up, H/2 with down, else H."""

  out_ch: int
  dropout: float
  use_scale_shift_norm: bool
  up: bool = False
  down: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC, emb_BxE, train: bool):
    h = nn.silu(_group_norm(x_BxHxWxC, "in_layers_0"))
    if self.up or self.down:
      resample = _upsample if self.up else _downsample
      h, x_BxHxWxC = resample(h), resample(x_BxHxWxC)
    h = _conv(h, self.out_ch, "in_layers_2", self.dtype)
    emb_width = 2 * self.out_ch if self.use_scale_shift_norm else self.out_ch
    emb_Bx1x1xF = _dense(nn.silu(emb_BxE), emb_width, "emb_layers_1", self.dtype)[:, None, None, :]
    if self.use_scale_shift_norm:
      scale, shift = jnp.split(emb_Bx1x1xF, 2, axis=-1)
      h = _group_norm(h, "out_layers_0") * (1 + scale) + shift
    else:
      h = _group_norm(h + emb_Bx1x1xF, "out_layers_0")
    h = Dropout(self.dropout, deterministic=not train)(nn.silu(h))
    h = _conv(h, self.out_ch, "out_layers_3", self.dtype, zero=True)
    if x_BxHxWxC.shape[-1] != self.out_ch:
      x_BxHxWxC = _conv(x_BxHxWxC, self.out_ch, "skip_connection", self.dtype, kernel=1)
    return x_BxHxWxC + h


def _heads(channels: int, num_heads: int, num_head_channels: Optional[int]) -> int:
  """The number of attention heads over `channels`, or a ConfigError naming the bad setting."""
  if num_head_channels is not None:
    if num_head_channels <= 0 or channels % num_head_channels:
      raise errors.ConfigError(
        f"ADMUNet: attention over {channels} channels cannot use heads of num_head_channels={num_head_channels}; "
        "choose a divisor of every attended width (model_channels * channel_mult[level])."
      )
    return channels // num_head_channels
  if num_heads <= 0 or channels % num_heads:
    raise errors.ConfigError(f"ADMUNet: {channels} attention channels do not split into num_heads={num_heads} heads.")
  return num_heads


class AttentionBlock(nn.Module):
  """The reference's AttentionBlock with QKVAttention (q | k | v split before the heads):
  x_BxHxWxC -> same shape, x + proj_out(attention(qkv(GN(x))))."""

  num_heads: int = 1
  num_head_channels: Optional[int] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    B, H, W, C = x_BxHxWxC.shape
    N = _heads(C, self.num_heads, self.num_head_channels)
    qkv_BxLx3C = _dense(_group_norm(x_BxHxWxC, "norm").reshape(B, H * W, C), 3 * C, "qkv", self.dtype)
    q_BxLxNxK, k_BxLxNxK, v_BxLxNxK = (t.reshape(B, H * W, N, C // N) for t in jnp.split(qkv_BxLx3C, 3, axis=-1))
    # Scaled by 1/sqrt(K), softmax over the keys: the reference's (q K^-1/4) . (k K^-1/4).
    out_BxLxNxK = jax.nn.dot_product_attention(q_BxLxNxK, k_BxLxNxK, v_BxLxNxK)
    out_BxHxWxC = _dense(out_BxLxNxK.reshape(B, H, W, C), C, "proj_out", self.dtype, zero=True)
    return x_BxHxWxC + out_BxHxWxC


class _LabelEmbedding(nn.Module):
  """nn.Embedding(num_classes + 1, features, padding_idx=num_classes): N(0, 1) rows, the last
  (the null label) zero at init and never trained (its gradient is stopped)."""

  num_classes: int
  features: int

  @nn.compact
  def __call__(self, label_B):
    def init(key, shape, dtype=jnp.float32):
      return jax.random.normal(key, shape, dtype).at[-1].set(0.0)

    table = self.param("embedding", init, (self.num_classes + 1, self.features))
    table = jnp.concatenate([table[:-1], jax.lax.stop_gradient(table[-1:])], axis=0)
    return jnp.take(table, label_B, axis=0)


class ADMUNet(nn.Module):
  """The ADM U-Net: (x_BxHxWxC, t_B[, label_B]) -> f32[B, H, W, out_ch].

  x_BxHxWxC: images (any float dtype), H and W divisible by 2 ** (len(channel_mult) - 1).
  t_B: real times, embedded as given (see the module doc: the flow-matching reference feeds t in
    [0, 1] unscaled, so pass t in [0, 1] to reproduce it).
  label_B: int32 in [0, num_classes], num_classes being the null label (classifier-free guidance);
    ignored when num_classes is None; None on a conditional model means the null label. The table
    has num_classes + 1 rows, the same as the reference's.
  train: enables dropout (draws from the "dropout" rng stream).
  augment_BxA: must be None; it exists only for the signature shared by genjax's diffusion backbones.

  Parameter names and nesting are the reference's state_dict names with "." between module indices
  replaced by "_" (input_blocks_1_0/in_layers_2/kernel is input_blocks.1.0.in_layers.2.weight), so
  `variables_from_torch_state_dict` loads a reference checkpoint.
  """

  model_channels: int = 128
  channel_mult: Sequence[int] = (2, 2, 2)
  num_res_blocks: int = 4
  attn_resolutions: Sequence[int] = (16,)  # feature-map sizes (not the reference's downsample rates)
  dropout: float = 0.3
  num_heads: int = 1
  num_head_channels: Optional[int] = None  # None is the reference's -1 (use num_heads)
  use_scale_shift_norm: bool = True
  resblock_updown: bool = False
  conv_resample: bool = False
  out_ch: Optional[int] = None  # default: the input's channels
  num_classes: Optional[int] = None  # None: unconditional
  dtype: Any = jnp.float32

  def _check(self, H: int, W: int):
    levels = len(self.channel_mult)
    if levels < 1 or self.num_res_blocks < 1:
      raise errors.ConfigError(
        f"ADMUNet: needs at least one level and one residual block a level "
        f"(channel_mult={tuple(self.channel_mult)}, num_res_blocks={self.num_res_blocks})."
      )
    if H % 2 ** (levels - 1) or W % 2 ** (levels - 1):
      raise errors.ConfigError(
        f"ADMUNet: a {H}x{W} image cannot be halved {levels - 1} times (channel_mult={tuple(self.channel_mult)}); "
        f"use fewer levels or an image size divisible by {2 ** (levels - 1)}."
      )
    for mult in self.channel_mult:
      if (self.model_channels * mult) % _GROUPS:
        raise errors.ConfigError(
          f"ADMUNet: GroupNorm(32) needs widths divisible by 32; model_channels={self.model_channels} * {mult} "
          f"is {self.model_channels * mult}."
        )
    # Attention widths, checked up front so that a bad head setting fails before any compute.
    for level, mult in enumerate(self.channel_mult):
      if H // 2**level in self.attn_resolutions:
        _heads(self.model_channels * mult, self.num_heads, self.num_head_channels)
    _heads(self.model_channels * self.channel_mult[-1], self.num_heads, self.num_head_channels)

  def _res_block(self, ch, name, up=False, down=False):
    return ResBlock(ch, self.dropout, self.use_scale_shift_norm, up, down, self.dtype, name=name)

  def _attn_block(self, name):
    return AttentionBlock(self.num_heads, self.num_head_channels, self.dtype, name=name)

  def _embedding(self, t_B, label_B, B: int):
    """The time embedding (+ the label embedding): f[B, 4 model_channels]."""
    mc = self.model_channels
    emb_BxE = timestep_embedding(t_B, mc).astype(self.dtype)
    emb_BxE = _dense(emb_BxE, 4 * mc, "time_embed_0", self.dtype)
    emb_BxE = _dense(nn.silu(emb_BxE), 4 * mc, "time_embed_2", self.dtype)
    if self.num_classes is not None:
      if label_B is None:
        label_B = jnp.full((B,), self.num_classes, jnp.int32)
      emb_BxE = emb_BxE + _LabelEmbedding(self.num_classes, 4 * mc, name="label_emb")(label_B).astype(self.dtype)
    return emb_BxE

  def _encoder(self, x, emb_BxE, train: bool):
    """Every block's output, kept for the skip connections (input_blocks.i in the reference)."""
    mc, levels = self.model_channels, len(self.channel_mult)
    hs = [_conv(x, mc * self.channel_mult[0], "input_blocks_0_0", self.dtype)]
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        i = len(hs)
        h = self._res_block(mc * mult, f"input_blocks_{i}_0")(hs[-1], emb_BxE, train)
        if h.shape[1] in self.attn_resolutions:
          h = self._attn_block(f"input_blocks_{i}_1")(h)
        hs.append(h)
      if level != levels - 1:
        name, h = f"input_blocks_{len(hs)}_0", hs[-1]
        if self.resblock_updown:
          h = self._res_block(h.shape[-1], name, down=True)(h, emb_BxE, train)
        elif self.conv_resample:
          h = Downsample(self.dtype, name=name)(h)
        else:
          h = _downsample(h)
        hs.append(h)
    return hs

  def _decoder(self, h, hs, emb_BxE, train: bool):
    """num_res_blocks + 1 blocks a level, each taking one skip connection; the last block of every
    level but the first ends in the upsampling (output_blocks.i in the reference)."""
    i = 0
    for level in reversed(range(len(self.channel_mult))):
      for block in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, hs.pop()], axis=-1)
        h = self._res_block(self.model_channels * self.channel_mult[level], f"output_blocks_{i}_0")(h, emb_BxE, train)
        j = 1
        if h.shape[1] in self.attn_resolutions:
          h = self._attn_block(f"output_blocks_{i}_1")(h)
          j = 2
        if level and block == self.num_res_blocks:
          name = f"output_blocks_{i}_{j}"
          if self.resblock_updown:
            h = self._res_block(h.shape[-1], name, up=True)(h, emb_BxE, train)
          elif self.conv_resample:
            h = Upsample(self.dtype, name=name)(h)
          else:
            h = _upsample(h)
        i += 1
    assert not hs, "every skip connection is used once"
    return h

  @nn.compact
  def __call__(self, x_BxHxWxC, t_B, label_B=None, train: bool = False, augment_BxA=None):
    if augment_BxA is not None:
      raise errors.ConfigError("ADMUNet takes no augmentation labels (augment_BxA must be None).")
    B, H, W, C = x_BxHxWxC.shape
    self._check(H, W)
    emb_BxE = self._embedding(t_B, label_B, B)
    hs = self._encoder(x_BxHxWxC.astype(self.dtype), emb_BxE, train)
    h = self._res_block(hs[-1].shape[-1], "middle_block_0")(hs[-1], emb_BxE, train)
    h = self._attn_block("middle_block_1")(h)
    h = self._res_block(h.shape[-1], "middle_block_2")(h, emb_BxE, train)
    h = nn.silu(_group_norm(self._decoder(h, hs, emb_BxE, train), "out_0"))
    return _conv(h, self.out_ch or C, "out_2", self.dtype, zero=True).astype(jnp.float32)


def _legacy_qkv_order(num_rows: int, heads: int) -> np.ndarray:
  """Row permutation from guided-diffusion's legacy qkv layout (per head: q, k, v) to the new one
  (q of all heads, then k, then v): new[p * C + n * K + c] = legacy[n * 3K + p * K + c]."""
  k = num_rows // (3 * heads)
  return np.arange(num_rows).reshape(heads, 3, k).transpose(1, 0, 2).reshape(-1)


def variables_from_torch_state_dict(
  state_dict: Mapping[str, Any],
  *,
  legacy_attention_order: bool = False,
  num_heads: int = 1,
  num_head_channels: Optional[int] = None,
) -> Dict[str, Any]:
  """{"params": ...} for ADMUNet from the reference UNetModel's state_dict (name -> array; torch
  tensors are converted with .numpy()). Conv2d weights (O, I, kh, kw) become (kh, kw, I, O)
  kernels, Linear and 1x1 Conv1d weights (O, I[, 1]) become (I, O), GroupNorm weights become
  scales, the label table is kept as is.

  legacy_attention_order=True loads a model built with use_new_attention_order=False
  (guided-diffusion's default): its qkv rows are permuted into this module's order, which needs the
  head setting (num_heads, num_head_channels) the checkpoint was trained with.

  The flow-matching code's checkpoints wrap the model in its EMA module (keys "model.*" and
  "shadow_params.N"): load one into EMA(UNetModel(...)), call .eval() (which copies the averaged
  weights into the model) and pass ema.model.state_dict().
  """
  params: Dict[str, Any] = {}
  for key, value in state_dict.items():
    w = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, np.float32)
    parts = key.split(".")
    depth = {"input_blocks": 3, "output_blocks": 3, "middle_block": 2, "time_embed": 2, "out": 2, "label_emb": 1}.get(
      parts[0]
    )
    if depth is None or len(parts) <= depth:
      raise errors.ConfigError(
        f"variables_from_torch_state_dict: {key!r} is not a parameter of the reference UNetModel."
      )
    path = ["_".join(parts[:depth])] + (["_".join(parts[depth:-1])] if len(parts) > depth + 1 else [])
    leaf = parts[-1]
    if leaf == "bias":
      name = "bias"
    elif leaf != "weight":
      raise errors.ConfigError(f"variables_from_torch_state_dict: unexpected parameter {key!r}.")
    elif parts[0] == "label_emb":
      path, name = ["label_emb"], "embedding"
    elif w.ndim == 4:
      name, w = "kernel", w.transpose(2, 3, 1, 0)
    elif w.ndim in (2, 3):
      name, w = "kernel", w.reshape(w.shape[0], w.shape[1]).T
    else:
      name = "scale"
    if legacy_attention_order and path[-1] == "qkv":
      rows = w.shape[-1]
      perm = _legacy_qkv_order(rows, _heads(rows // 3, num_heads, num_head_channels))
      w = w[..., perm]
    node = params
    for p in path:
      node = node.setdefault(p, {})
    node[name] = jnp.asarray(w)
  return {"params": params}


def count_params(module: nn.Module, image_shape, with_labels: bool = False) -> int:
  """The number of parameters of `module` on images of `image_shape` (H, W, C), from shapes alone
  (jax.eval_shape: nothing is allocated or computed)."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  t = jax.ShapeDtypeStruct((1,), jnp.float32)
  args = (x, t, jax.ShapeDtypeStruct((1,), jnp.int32)) if with_labels else (x, t)
  shapes = jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a), *args)
  return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))
