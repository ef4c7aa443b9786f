"""EDM's SongUNet: DDPM++ and NCSN++ (Song et al. 2021) as Karras et al. 2022 rebuilt them in
NVlabs/edm training/networks.py (classes SongUNet, UNetBlock, Conv2d, GroupNorm, Linear,
PositionalEmbedding, FourierEmbedding), as a Flax Linen module.

The same network as the reference, layer for layer: the noise label's positional (DDPM++) or
random Fourier (NCSN++) features plus a class map and an augmentation-label map, a two-layer
mapping to the block embedding; residual blocks GN -> SiLU -> conv3x3 (with up/downsampling) ->
+ Linear(emb) -> GN -> SiLU -> dropout -> conv3x3, a 1x1 shortcut (resampled when the block
resamples), sums scaled by sqrt(0.5), one-head self-attention at `attn_resolutions` and once at
the lowest resolution; the "standard", "skip" and "residual" encoders and the "standard" and "skip"
decoders; FIR resampling with `resample_filter` ([1, 1] box or [1, 3, 3, 1]), unfused (depthwise
filter, then the convolution) and fused for the residual encoder's 3x3 downsampling convolution
(convolution, then the strided filter), as the reference uses them. The same initialisation
(xavier_uniform, zero biases, 1e-5 times xavier_uniform for the last convolution of each branch
and the output, sqrt(0.2) for the attention's qkv), eps 1e-6 and min(32, C // 4) GroupNorm groups.
With EDM's CIFAR-10 settings (train.py --arch=ddpmpp / ncsnpp, augment_dim 9) it has EDM's
55,733,891 / 56,397,827 parameters (55,735,299 / 56,400,643 with label_dim 10), and on EDM's
weights (variables_from_edm_state_dict) its outputs are EDM's to float32 rounding
(tests/nn/test_song_unet.py).

What differs from the reference:
- NHWC layout; module and parameter names follow EDM's state_dict (enc.16x16_block0.conv0.weight
  is params["enc_16x16_block0"]["conv0"]["kernel"]), kernels HWIO, GroupNorm's weight is "scale".
- The qkv convolution keeps EDM's channel order (channel 3c + i is q, k, v of channel c for i = 0,
  1, 2), so EDM's weights load by transposition alone.
- Class labels are indices: label_B in [0, num_classes], num_classes being the null label of
  classifier-free guidance, which maps to the zero one-hot vector, i.e. exactly what EDM's label
  dropout feeds. Label dropout is the caller's job (genjax's diffusion family swaps in the null
  label); the map is EDM's Linear(num_classes -> noise channels) on one_hot * sqrt(num_classes).
- The augmentation map's parameters exist whenever augment_dim > 0 (init creates them even
  without augment_BxA, so the parameter count is EDM's); with augment_BxA=None the map is skipped,
  as EDM skips it for augment_labels=None.
- The Fourier embedding's frequencies (a non-trainable buffer of N(0, 16^2) draws in EDM) are not
  parameters: by default they are a constant, 16 * np.random.RandomState(0).randn(C // 2) (the
  legacy RandomState stream is frozen by NumPy's policy), so a checkpoint of "params" alone
  restores the same function. A variables dict may override them with a "constants" collection,
  {"constants": {"map_noise": {"freqs": f32[C // 2]}}}, which variables_from_edm_state_dict fills
  from EDM's buffer; model.init never creates it.
- Parameters are float32; convolutions, dense layers and attention compute in `dtype` (bfloat16
  on accelerators), GroupNorm statistics and the noise features in float32 (EDM's fp16 mode casts
  weights to fp16 instead). The attention logits and softmax are float32, as EDM's AttentionOp.
- Left out: EDM's fused upsampling (no SongUNet layer uses it) and UNetBlock's options that only
  its DhariwalUNet uses (adaptive scale, several heads, kernel-free skips).
"""

import math
from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors
from genjax.nn.embeddings import sinusoidal_embedding
from genjax.nn.norm import Dropout


def _xavier_uniform(gain: float):
  """EDM's weight_init('xavier_uniform') times init_weight=gain: U(+-gain sqrt(6 / (fan_in + fan_out)))
  with the fans of a conv including the kernel's area, as Flax's variance_scaling counts them."""
  return nn.initializers.variance_scaling(gain**2, "fan_avg", "uniform")


_init = _xavier_uniform(1.0)
_init_zero = _xavier_uniform(1e-5)  # the last conv of each branch and the output conv
_init_attn = _xavier_uniform(math.sqrt(0.2))  # the attention's qkv
_SKIP_SCALE = math.sqrt(0.5)
_EPS = 1e-6


def _group_norm(x_BxHxWxC, name: str):
  """EDM's GroupNorm(min(32, C // 4) groups, eps 1e-6), statistics and affine in float32; cast back."""
  C = x_BxHxWxC.shape[-1]
  groups = min(32, C // 4)
  if groups < 1 or C % groups:
    raise errors.ConfigError(
      f"SongUNet: GroupNorm cannot split {C} channels into min(32, {C} // 4) = {groups} equal groups; "
      "use a model_channels (and channel_mult) giving multiples of 32 channels, or at least of 4."
    )
  y = nn.GroupNorm(num_groups=groups, epsilon=_EPS, dtype=jnp.float32, use_fast_variance=False, name=name)(
    x_BxHxWxC.astype(jnp.float32)
  )
  return y.astype(x_BxHxWxC.dtype)


def _depthwise(x_BxHxWxC, f_KxK: np.ndarray, stride: int, dilation: int, pad: int):
  """The same 2-D FIR filter on every channel: a grouped convolution with explicit padding."""
  C = x_BxHxWxC.shape[-1]
  kernel = jnp.asarray(np.tile(f_KxK[:, :, None, None], (1, 1, 1, C)), x_BxHxWxC.dtype)
  return jax.lax.conv_general_dilated(
    x_BxHxWxC,
    kernel,
    window_strides=(stride, stride),
    padding=[(pad, pad)] * 2,
    lhs_dilation=(dilation, dilation),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=C,
  )


class Conv2d(nn.Module):
  """EDM's Conv2d: an optional FIR up- or downsampling by 2 and a kernel x kernel convolution
  (kernel 0: resampling only, no parameters). x_BxHxWxC -> f[B, H', W', features].

  Unfused (the default) it filters first: upsampling is conv_transpose2d(x, 4 f (x) f, stride 2,
  padding (len(f) - 1) // 2) per channel, downsampling conv2d(x, f (x) f, stride 2, the same
  padding), f normalised to sum 1. Fused downsampling convolves first (padding widened by the
  filter's) and then applies the strided filter, as EDM's residual encoder does.
  """

  features: int
  kernel: int
  up: bool = False
  down: bool = False
  resample_filter: Sequence[int] = (1, 1)
  fused_resample: bool = False
  kernel_init: Any = _init
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    if self.up and self.down:
      raise errors.ConfigError("SongUNet Conv2d: up and down are exclusive.")
    if self.fused_resample and self.up and self.kernel:
      raise errors.ConfigError("SongUNet Conv2d: fused upsampling is not implemented (SongUNet never uses it).")
    x = x_BxHxWxC.astype(self.dtype)
    k = self.kernel
    w = None
    if k:
      w = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32).astype(self.dtype)
    f = np.asarray(self.resample_filter, np.float32)
    f_KxK = np.outer(f, f) / np.square(f.sum())
    w_pad, f_pad = k // 2, (len(f) - 1) // 2
    conv = lambda x, pad: jax.lax.conv_general_dilated(
      x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    if self.fused_resample and self.down and k:
      x = _depthwise(conv(x, w_pad + f_pad), f_KxK, stride=2, dilation=1, pad=0)
    else:
      if self.up:  # the transposed convolution: dilate the input, pad by K - 1 - p, flip the filter
        x = _depthwise(x, 4 * f_KxK[::-1, ::-1], stride=1, dilation=2, pad=len(f) - 1 - f_pad)
      if self.down:
        x = _depthwise(x, f_KxK, stride=2, dilation=1, pad=f_pad)
      if k:
        x = conv(x, w_pad)
    if k:
      x = x + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
    return x


class UNetBlock(nn.Module):
  """EDM's UNetBlock as SongUNet configures it (additive embedding, 1x1 resampling shortcut, one
  attention head). x_BxHxWxC, emb_BxE -> f[B, H', W', out_ch] (H' = 2H up, H / 2 down)."""

  out_ch: int
  up: bool = False
  down: bool = False
  attention: bool = False
  dropout: float = 0.0
  resample_filter: Sequence[int] = (1, 1)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC, emb_BxE, train: bool):
    conv = lambda ch, k, name, init=_init, **kw: Conv2d(
      ch, k, resample_filter=self.resample_filter, kernel_init=init, dtype=self.dtype, name=name, **kw
    )
    x = x_BxHxWxC.astype(self.dtype)
    h = conv(self.out_ch, 3, "conv0", up=self.up, down=self.down)(nn.silu(_group_norm(x, "norm0")))
    affine = nn.Dense(self.out_ch, dtype=self.dtype, kernel_init=_init, name="affine")
    h = nn.silu(_group_norm(h + affine(emb_BxE)[:, None, None, :], "norm1"))
    h = conv(self.out_ch, 3, "conv1", _init_zero)(Dropout(self.dropout, deterministic=not train)(h))
    if self.out_ch != x.shape[-1] or self.up or self.down:
      x = conv(self.out_ch, 1, "skip", up=self.up, down=self.down)(x)
    x = (h + x) * _SKIP_SCALE
    if self.attention:
      B, H, W, C = x.shape
      qkv_BxLx1xCx3 = conv(3 * C, 1, "qkv", _init_attn)(_group_norm(x, "norm2")).reshape(B, H * W, 1, C, 3)
      q, k, v = (qkv_BxLx1xCx3[..., i] for i in range(3))  # EDM's channel order: (c, {q, k, v})
      a_BxLx1xC = jax.nn.dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v, logits in f32
      x = (conv(C, 1, "proj", _init_zero)(a_BxLx1xC.reshape(B, H, W, C)) + x) * _SKIP_SCALE
    return x


class FourierEmbedding(nn.Module):
  """NCSN++'s random Fourier features of the noise label: [sin(2 pi f t), cos(2 pi f t)] with
  C / 2 fixed frequencies f ~ N(0, 16^2). t_B -> f32[B, C].

  The frequencies are constants, not parameters: 16 * RandomState(0).randn(C // 2) unless the
  variables hold {"constants": {"freqs": ...}} here (EDM's buffer, from variables_from_edm_state_dict).
  """

  num_channels: int
  scale: float = 16.0

  @nn.compact
  def __call__(self, t_B):
    if self.has_variable("constants", "freqs"):
      freqs_F = self.get_variable("constants", "freqs")
    else:
      freqs_F = self.scale * np.random.RandomState(0).randn(self.num_channels // 2).astype(np.float32)
    angles_BxF = jnp.asarray(t_B, jnp.float32)[:, None] * (2 * np.pi * jnp.asarray(freqs_F, jnp.float32))[None, :]
    # EDM concatenates [cos, sin] and then swaps the halves; this is the swapped order directly.
    return jnp.concatenate([jnp.sin(angles_BxF), jnp.cos(angles_BxF)], axis=-1)


class SongUNet(nn.Module):
  """EDM's SongUNet: (x_BxHxWxC, t_B[, label_B][, augment_BxA]) -> f32[B, H, W, out_ch].

  t_B is the real-valued noise label (EDM's c_noise). label_B (int32 in [0, num_classes],
  num_classes meaning "no label") is required when num_classes is set. augment_BxA holds EDM's
  augmentation labels (A = augment_dim); None skips the augmentation map, as EDM does, and it is
  ignored when augment_dim is 0. Dropout draws from the "dropout" stream when train is True.
  """

  model_channels: int = 128
  channel_mult: Sequence[int] = (2, 2, 2)
  channel_mult_emb: int = 4
  num_blocks: int = 4
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.10
  embedding_type: str = "positional"  # or "fourier"
  channel_mult_noise: int = 1
  encoder_type: str = "standard"  # "skip" / "residual"
  decoder_type: str = "standard"  # or "skip"
  resample_filter: Sequence[int] = (1, 1)
  augment_dim: int = 0
  out_ch: Optional[int] = None  # default: the input's channels
  num_classes: Optional[int] = None  # EDM's label_dim; None = unconditional
  dtype: Any = jnp.float32

  def _check(self, H: int, W: int) -> None:
    choices = {
      "embedding_type": ("positional", "fourier"),
      "encoder_type": ("standard", "skip", "residual"),
      "decoder_type": ("standard", "skip"),
    }
    for field, allowed in choices.items():
      if getattr(self, field) not in allowed:
        raise errors.ConfigError(f"SongUNet: {field} = {getattr(self, field)!r} is not one of {allowed}.")
    levels = len(self.channel_mult)
    if levels < 1 or H % 2 ** (levels - 1) or W % 2 ** (levels - 1):
      raise errors.ConfigError(
        f"SongUNet: a {H}x{W} image cannot be halved {levels - 1} times (channel_mult="
        f"{tuple(self.channel_mult)}); use fewer levels, e.g. channel_mult=(1, 2, 2) for 28x28 (28 -> 14 -> 7)."
      )
    noise_ch = self.model_channels * self.channel_mult_noise
    if noise_ch % 2 or noise_ch < 4:
      raise errors.ConfigError(f"SongUNet: the noise features need an even width of at least 4, got {noise_ch}.")
    if not self.resample_filter or any(not isinstance(v, (int, float)) for v in self.resample_filter):
      raise errors.ConfigError(f"SongUNet: resample_filter = {self.resample_filter!r} must be a list of numbers.")
    if self.num_classes is not None and self.num_classes < 1:
      raise errors.ConfigError(f"SongUNet: num_classes = {self.num_classes}; use None for an unconditional model.")

  def _dense(self, ch, name, **kw):
    return nn.Dense(ch, dtype=self.dtype, kernel_init=_init, name=name, **kw)

  def _conv(self, ch, k, name, init=_init, **kw):
    return Conv2d(ch, k, resample_filter=self.resample_filter, kernel_init=init, dtype=self.dtype, name=name, **kw)

  def _block(self, ch, name, **kw):
    return UNetBlock(ch, dropout=self.dropout, resample_filter=self.resample_filter, dtype=self.dtype, name=name, **kw)

  def _embedding(self, t_B, label_B, augment_BxA, B: int):
    """The mapping network: noise features (+ class map + augmentation map) -> two SiLU layers."""
    noise_ch = self.model_channels * self.channel_mult_noise
    emb_ch = self.model_channels * self.channel_mult_emb
    if self.embedding_type == "positional":  # EDM's PositionalEmbedding(endpoint=True), halves swapped
      emb_BxN = sinusoidal_embedding(t_B, noise_ch)
    else:
      emb_BxN = FourierEmbedding(noise_ch, name="map_noise")(t_B)
    emb_BxN = emb_BxN.astype(self.dtype)
    if self.num_classes is not None:
      if label_B is None:
        raise errors.ConfigError(
          "SongUNet: this model is class-conditional; pass label_B (num_classes for 'no label')."
        )
      # one_hot of the null label num_classes is all zeros: EDM's dropped label.
      onehot_BxK = jax.nn.one_hot(label_B, self.num_classes, dtype=self.dtype) * math.sqrt(self.num_classes)
      emb_BxN = emb_BxN + self._dense(noise_ch, "map_label")(onehot_BxK)
    if self.augment_dim:
      map_augment = self._dense(noise_ch, "map_augment", use_bias=False)
      if augment_BxA is not None:
        if augment_BxA.shape != (B, self.augment_dim):
          raise errors.ConfigError(f"SongUNet: augment_BxA has shape {augment_BxA.shape}, not {(B, self.augment_dim)}.")
        emb_BxN = emb_BxN + map_augment(augment_BxA.astype(self.dtype))
      elif self.is_initializing():  # create its parameters all the same
        map_augment(jnp.zeros((B, self.augment_dim), self.dtype))
    emb_BxE = nn.silu(self._dense(emb_ch, "map_layer0")(emb_BxN))
    return nn.silu(self._dense(emb_ch, "map_layer1")(emb_BxE))

  def _encoder(self, x, emb_BxE, train: bool, H: int, W: int):
    """The encoder's output and every non-auxiliary output kept for the skip connections."""
    aux = x
    skips = []
    for level, mult in enumerate(self.channel_mult):
      res = f"{H >> level}x{W >> level}"
      if level == 0:
        x = self._conv(self.model_channels, 3, f"enc_{res}_conv")(x)
      else:
        x = self._block(x.shape[-1], f"enc_{res}_down", down=True)(x, emb_BxE, train)
        if self.encoder_type == "skip":
          aux = self._conv(aux.shape[-1], 0, f"enc_{res}_aux_down", down=True)(aux)
          x = x + self._conv(x.shape[-1], 1, f"enc_{res}_aux_skip")(aux)
        elif self.encoder_type == "residual":
          down = self._conv(x.shape[-1], 3, f"enc_{res}_aux_residual", down=True, fused_resample=True)
          x = aux = (x + down(aux)) / math.sqrt(2)
      skips.append(x)
      for idx in range(self.num_blocks):
        attention = (H >> level) in self.attn_resolutions
        x = self._block(self.model_channels * mult, f"enc_{res}_block{idx}", attention=attention)(x, emb_BxE, train)
        skips.append(x)
    return x, skips

  def _decoder(self, x, skips, emb_BxE, train: bool, H: int, W: int, out_ch: int):
    """Each block takes one skip connection (num_blocks + 1 per level); with the "skip" decoder
    every level adds its output image to the upsampled one of the level below."""
    aux = None
    for level in reversed(range(len(self.channel_mult))):
      res = f"{H >> level}x{W >> level}"
      if level == len(self.channel_mult) - 1:
        x = self._block(x.shape[-1], f"dec_{res}_in0", attention=True)(x, emb_BxE, train)
        x = self._block(x.shape[-1], f"dec_{res}_in1")(x, emb_BxE, train)
      else:
        x = self._block(x.shape[-1], f"dec_{res}_up", up=True)(x, emb_BxE, train)
      for idx in range(self.num_blocks + 1):
        attention = idx == self.num_blocks and (H >> level) in self.attn_resolutions
        x = jnp.concatenate([x, skips.pop()], axis=-1)
        name = f"dec_{res}_block{idx}"
        x = self._block(self.model_channels * self.channel_mult[level], name, attention=attention)(x, emb_BxE, train)
      if self.decoder_type == "skip" or level == 0:
        if aux is not None:
          aux = self._conv(out_ch, 0, f"dec_{res}_aux_up", up=True)(aux)
        norm = _group_norm(x, f"dec_{res}_aux_norm")
        tmp = self._conv(out_ch, 3, f"dec_{res}_aux_conv", _init_zero)(nn.silu(norm))
        aux = tmp if aux is None else tmp + aux
    assert not skips, "every skip connection is used once"
    return aux

  @nn.compact
  def __call__(self, x_BxHxWxC, t_B, label_B=None, train: bool = False, augment_BxA=None):
    B, H, W, C = x_BxHxWxC.shape
    self._check(H, W)
    emb_BxE = self._embedding(t_B, label_B, augment_BxA, B)
    x, skips = self._encoder(x_BxHxWxC.astype(self.dtype), emb_BxE, train, H, W)
    return self._decoder(x, skips, emb_BxE, train, H, W, self.out_ch or C).astype(jnp.float32)


def variables_from_edm_state_dict(state_dict: Mapping[str, Any]) -> dict:
  """Flax variables for SongUNet from the state_dict of EDM's SongUNet (torch tensors or numpy
  arrays, keyed by EDM's names; a leading "model." as in EDMPrecond's state_dict is dropped).

  Returns {"params": ...} and, for NCSN++, {"constants": {"map_noise": {"freqs": ...}}}: EDM's
  Fourier frequencies. Conv weights [O, I, K, K] become HWIO kernels, Linear weights [O, I] become
  [I, O] kernels, GroupNorm weights become "scale"; the resample filters are not read (they follow
  from resample_filter). The module must be built with EDM's settings (see the module docstring).
  """
  variables: dict = {"params": {}}
  for full_name, value in state_dict.items():
    name = full_name[len("model.") :] if full_name.startswith("model.") else full_name
    array = np.asarray(value, dtype=np.float32)
    *path, leaf = name.split(".")
    if leaf == "resample_filter":
      continue
    if path and path[0] in ("enc", "dec"):
      path = [f"{path[0]}_{path[1]}", *path[2:]]
    collection = "params"
    if leaf == "freqs":
      collection = "constants"
    elif leaf == "weight" and array.ndim == 4:
      leaf, array = "kernel", array.transpose(2, 3, 1, 0)
    elif leaf == "weight" and array.ndim == 2:
      leaf, array = "kernel", array.T
    elif leaf == "weight" and array.ndim == 1:
      leaf = "scale"
    elif leaf != "bias":
      raise errors.ConfigError(f"variables_from_edm_state_dict: {full_name!r} is not an EDM SongUNet entry.")
    node = variables.setdefault(collection, {})
    for part in path:
      node = node.setdefault(part, {})
    node[leaf] = jnp.asarray(array)
  return variables
