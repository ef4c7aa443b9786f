"""Stable Diffusion's KL-regularised autoencoder (KL-f8, the "SD VAE"), as a Flax Linen module.

The first stage of latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models", Sec. 3.1 and Appendix G): a convolutional encoder maps an image
x[B,H,W,3] to a diagonal Gaussian over latents z[B,H/f,W/f,4], f = 2^(len(block_out_channels) - 1),
and a decoder maps z back to an image. Laid out as diffusers' `AutoencoderKL` (diffusers
models/autoencoders/autoencoder_kl.py, with vae.py's Encoder, Decoder and
DiagonalGaussianDistribution, resnet.py's ResnetBlock2D, downsampling.py's Downsample2D,
upsampling.py's Upsample2D, unets/unet_2d_blocks.py's DownEncoderBlock2D, UpDecoderBlock2D and
UNetMidBlock2D, and attention_processor.py's single-head Attention with a group norm), so that
its weights load one to one:

  encoder: conv_in 3x3 -> per level i: layers_per_block ResnetBlocks to block_out_channels[i],
           then (all but the last level) a stride-2 3x3 conv on the input padded by one row at the
           bottom and one column at the right -> mid block (ResnetBlock, self-attention,
           ResnetBlock) -> GroupNorm, SiLU, conv_out 3x3 to 2 * latent_channels
  quant_conv 1x1 -> (mean, logvar), logvar clamped to [-30, 20]
  post_quant_conv 1x1 -> decoder: conv_in 3x3 -> mid block -> per level (widest first):
           layers_per_block + 1 ResnetBlocks, then (all but the last) nearest 2x upsampling and a
           3x3 conv -> GroupNorm, SiLU, conv_out 3x3 to out_channels

The defaults are SD 1.x's KL-f8 (stabilityai/sd-vae-ft-mse, CompVis' kl-f8): block_out_channels
(128, 256, 512, 512), 2 layers per block, 4 latent channels, GroupNorm(32) with eps 1e-6; 83,653,863
parameters. Latents are multiplied by SCALING_FACTOR before a diffusion model sees them.

NHWC throughout. Parameters are float32; convolutions, dense layers and attention compute in
`dtype`, GroupNorm statistics always in float32, and the moments and images come back float32.
`load_weights` reads a .safetensors file in diffusers' layout (either its current or its older
attention names) or in the original CompVis/LDM layout (alone or inside a full SD checkpoint);
`save_weights` writes diffusers' layout.
"""

import math
import os
import re
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from genjax import errors

# Latents are scaled by this before diffusion (and divided by it before decoding), so that SD's
# KL-f8 latents have roughly unit variance (Rombach et al. 2022, Sec. 4.3.2 and Appendix G).
SCALING_FACTOR = 0.18215

# torch's default Conv2d / Linear kernel initialisation (kaiming_uniform with a = sqrt(5), i.e.
# U(-1/sqrt(fan_in), 1/sqrt(fan_in))), as diffusers' AutoencoderKL starts; biases start at zero.
_torch_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _group_norm(x, num_groups: int, name: str):
  """GroupNorm (eps 1e-6, as diffusers' VAE) whose statistics run in float32; cast back to x's dtype."""
  y = nn.GroupNorm(num_groups=num_groups, epsilon=1e-6, dtype=jnp.float32, use_fast_variance=False, name=name)(
    x.astype(jnp.float32)
  )
  return y.astype(x.dtype)


def _conv(features: int, kernel: int, dtype, name: str, stride: int = 1, padding=None):
  """A conv with torch's kernel initialisation; 'same' zero padding for odd kernels by default."""
  if padding is None:
    padding = ((kernel // 2, kernel // 2),) * 2
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding=padding,
    dtype=dtype,
    kernel_init=_torch_init,
    name=name,
  )


class ResnetBlock(nn.Module):
  """diffusers' ResnetBlock2D without a time embedding: GN -> SiLU -> conv3x3 -> GN -> SiLU ->
  conv3x3, plus a 1x1 conv_shortcut when the channel count changes. x_BxHxWxC -> f[B,H,W,out]."""

  out_channels: int
  num_groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    h = _conv(self.out_channels, 3, self.dtype, "conv1")(nn.silu(_group_norm(x_BxHxWxC, self.num_groups, "norm1")))
    h = _conv(self.out_channels, 3, self.dtype, "conv2")(nn.silu(_group_norm(h, self.num_groups, "norm2")))
    if x_BxHxWxC.shape[-1] != self.out_channels:
      x_BxHxWxC = _conv(self.out_channels, 1, self.dtype, "conv_shortcut")(x_BxHxWxC)
    return x_BxHxWxC + h


class Attention(nn.Module):
  """Single-head self-attention over the H*W positions after a GroupNorm, with a residual
  connection (diffusers' Attention as UNetMidBlock2D builds it for the VAE). x_BxHxWxC -> same."""

  num_groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    B, H, W, C = x_BxHxWxC.shape
    h_BxLx1xC = _group_norm(x_BxHxWxC, self.num_groups, "group_norm").reshape(B, H * W, 1, C)
    dense = lambda name: nn.Dense(C, dtype=self.dtype, kernel_init=_torch_init, name=name)
    q, k, v = (dense(name)(h_BxLx1xC) for name in ("to_q", "to_k", "to_v"))
    out_BxLx1xC = jax.nn.dot_product_attention(q, k, v)  # scale 1/sqrt(C), softmax in float32
    return x_BxHxWxC + dense("to_out")(out_BxLx1xC.reshape(B, H, W, C))


class MidBlock(nn.Module):
  """UNetMidBlock2D of the VAE: ResnetBlock, Attention, ResnetBlock at constant width. x_BxHxWxC -> same."""

  num_groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    C = x_BxHxWxC.shape[-1]
    h = ResnetBlock(C, self.num_groups, self.dtype, name="resnets_0")(x_BxHxWxC)
    h = Attention(self.num_groups, self.dtype, name="attentions_0")(h)
    return ResnetBlock(C, self.num_groups, self.dtype, name="resnets_1")(h)


class Downsample(nn.Module):
  """Downsample2D with padding 0: zero-pad one row at the bottom and one column at the right, then a
  3x3 stride-2 conv. x_BxHxWxC -> f[B, floor(H/2), floor(W/2), C] (H/2, W/2 when even)."""

  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    return _conv(x_BxHxWxC.shape[-1], 3, self.dtype, "conv", stride=2, padding=((0, 1), (0, 1)))(x_BxHxWxC)


class Upsample(nn.Module):
  """Upsample2D: nearest-neighbour 2x, then a 3x3 conv. x_BxHxWxC -> f[B, 2H, 2W, C]."""

  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    h = jnp.repeat(jnp.repeat(x_BxHxWxC, 2, axis=1), 2, axis=2)
    return _conv(x_BxHxWxC.shape[-1], 3, self.dtype, "conv")(h)


class Encoder(nn.Module):
  """vae.py's Encoder (double_z): x_BxHxWxC -> f[B, H/f, W/f, 2 * latent_channels] (before quant_conv)."""

  block_out_channels: Sequence[int]
  layers_per_block: int
  latent_channels: int
  num_groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    h = _conv(self.block_out_channels[0], 3, self.dtype, "conv_in")(x_BxHxWxC)
    for i, ch in enumerate(self.block_out_channels):  # DownEncoderBlock2D
      for j in range(self.layers_per_block):
        h = ResnetBlock(ch, self.num_groups, self.dtype, name=f"down_blocks_{i}_resnets_{j}")(h)
      if i != len(self.block_out_channels) - 1:
        h = Downsample(self.dtype, name=f"down_blocks_{i}_downsamplers_0")(h)
    h = MidBlock(self.num_groups, self.dtype, name="mid_block")(h)
    h = nn.silu(_group_norm(h, self.num_groups, "conv_norm_out"))
    return _conv(2 * self.latent_channels, 3, self.dtype, "conv_out")(h)


class Decoder(nn.Module):
  """vae.py's Decoder: z_BxhxwxL -> f[B, h*f, w*f, out_channels] (after post_quant_conv)."""

  block_out_channels: Sequence[int]
  layers_per_block: int
  out_channels: int
  num_groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z_BxhxwxL):
    h = _conv(self.block_out_channels[-1], 3, self.dtype, "conv_in")(z_BxhxwxL)
    h = MidBlock(self.num_groups, self.dtype, name="mid_block")(h)
    for i, ch in enumerate(reversed(self.block_out_channels)):  # UpDecoderBlock2D, widest first
      for j in range(self.layers_per_block + 1):
        h = ResnetBlock(ch, self.num_groups, self.dtype, name=f"up_blocks_{i}_resnets_{j}")(h)
      if i != len(self.block_out_channels) - 1:
        h = Upsample(self.dtype, name=f"up_blocks_{i}_upsamplers_0")(h)
    h = nn.silu(_group_norm(h, self.num_groups, "conv_norm_out"))
    return _conv(self.out_channels, 3, self.dtype, "conv_out")(h)


class AutoencoderKL(nn.Module):
  """diffusers' AutoencoderKL; the defaults are Stable Diffusion 1.x's KL-f8 VAE.

  encode(x_BxHxWxC) -> (mean, logvar), each f32[B, H/f, W/f, latent_channels]
  decode(z_BxhxwxL) -> f32[B, h*f, w*f, out_channels]
  __call__(x_BxHxWxC, rng, sample_posterior=True) -> (reconstruction, mean, logvar): decodes a
    sample of the posterior (drawn with rng), or its mean when sample_posterior is False.
  f = 2 ** (len(block_out_channels) - 1). Images are in [-1, 1] for SD's weights.
  """

  block_out_channels: Sequence[int] = (128, 256, 512, 512)
  layers_per_block: int = 2
  latent_channels: int = 4
  in_channels: int = 3
  out_channels: int = 3
  norm_num_groups: int = 32
  dtype: Any = jnp.float32

  def setup(self):
    bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
    if not self.block_out_channels or bad:
      raise errors.ConfigError(
        f"AutoencoderKL: block_out_channels={tuple(self.block_out_channels)} must be non-empty and each "
        f"divisible by norm_num_groups={self.norm_num_groups} (GroupNorm); {bad} are not."
      )
    self.encoder = Encoder(
      self.block_out_channels, self.layers_per_block, self.latent_channels, self.norm_num_groups, self.dtype
    )
    self.decoder = Decoder(
      self.block_out_channels, self.layers_per_block, self.out_channels, self.norm_num_groups, self.dtype
    )
    self.quant_conv = _conv(2 * self.latent_channels, 1, self.dtype, "quant_conv")
    self.post_quant_conv = _conv(self.latent_channels, 1, self.dtype, "post_quant_conv")

  @property
  def downsampling_factor(self) -> int:
    return 2 ** (len(self.block_out_channels) - 1)

  def encode(self, x_BxHxWxC):
    """The posterior's moments: (mean, logvar), each f32[B, H/f, W/f, latent_channels]."""
    if x_BxHxWxC.ndim != 4 or x_BxHxWxC.shape[-1] != self.in_channels:
      raise errors.ConfigError(
        f"AutoencoderKL.encode: expected NHWC images with in_channels={self.in_channels}, got shape {x_BxHxWxC.shape}."
      )
    moments = self.quant_conv(self.encoder(x_BxHxWxC.astype(self.dtype))).astype(jnp.float32)
    mean_BxhxwxL, logvar_BxhxwxL = jnp.split(moments, 2, axis=-1)
    return mean_BxhxwxL, jnp.clip(logvar_BxhxwxL, -30.0, 20.0)

  def decode(self, z_BxhxwxL):
    """Latents (unscaled: divide a diffusion model's latents by SCALING_FACTOR first) -> f32 images."""
    if z_BxhxwxL.ndim != 4 or z_BxhxwxL.shape[-1] != self.latent_channels:
      raise errors.ConfigError(
        f"AutoencoderKL.decode: expected NHWC latents with latent_channels={self.latent_channels}, got shape "
        f"{z_BxhxwxL.shape}."
      )
    return self.decoder(self.post_quant_conv(z_BxhxwxL.astype(self.dtype))).astype(jnp.float32)

  def __call__(self, x_BxHxWxC, rng=None, sample_posterior: bool = True):
    _, H, W, _ = x_BxHxWxC.shape
    f = self.downsampling_factor
    if H % f or W % f:
      raise errors.ConfigError(
        f"AutoencoderKL: a {H}x{W} image does not come back at its size through {len(self.block_out_channels)} "
        f"levels (factor {f}); crop or pad it to a multiple of {f}."
      )
    mean, logvar = self.encode(x_BxHxWxC)
    if sample_posterior:
      if rng is None:
        raise errors.ConfigError("AutoencoderKL: sample_posterior=True needs rng (or pass sample_posterior=False).")
      z = sample_latent(rng, mean, logvar)
    else:
      z = mean
    return self.decode(z), mean, logvar


def sample_latent(rng, mean, logvar):
  """A draw from N(mean, exp(logvar)) (DiagonalGaussianDistribution.sample): mean + exp(logvar/2) * eps."""
  eps = jax.random.normal(rng, mean.shape, jnp.float32)
  return mean.astype(jnp.float32) + jnp.exp(0.5 * logvar.astype(jnp.float32)) * eps


def kl(mean, logvar):
  """KL(N(mean, exp(logvar)) || N(0, I)) per example, summed over every latent: f32[B]
  (DiagonalGaussianDistribution.kl(): 0.5 * sum(mean^2 + var - 1 - logvar))."""
  mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
  return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=tuple(range(1, mean.ndim)))


def param_shapes(model: AutoencoderKL) -> dict:
  """The model's parameter tree as jax.ShapeDtypeStructs (jax.eval_shape: nothing is allocated)."""
  f = 2 ** (len(model.block_out_channels) - 1)
  x = jax.ShapeDtypeStruct((1, f, f, model.in_channels), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, sample_posterior=False), x)["params"]


def count_params(model: AutoencoderKL) -> int:
  """The number of parameters (83,653,863 for SD's KL-f8, as diffusers counts them)."""
  return sum(math.prod(p.shape) for p in jax.tree.leaves(param_shapes(model)))


# ---------------------------------------------------------------------------------------------
# Weights: diffusers' and the original (CompVis/LDM) safetensors layouts.

_INDEXED = re.compile(r"(down_blocks|up_blocks|resnets|attentions|downsamplers|upsamplers)_(\d+)[._]")
# diffusers before 0.14 named the VAE's attention layers differently (stabilityai/sd-vae-ft-mse's
# file among them); diffusers renames them on load, and so does load_weights.
_DEPRECATED_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
_LDM_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
# prefixes of the VAE inside a full SD checkpoint (first_stage_model.) and other single files (vae.)
_CHECKPOINT_PREFIXES = ("first_stage_model.", "vae.")
_SD_VAE_SOURCES = (
  "Stable Diffusion's VAE weights come from the Hugging Face Hub, e.g. stabilityai/sd-vae-ft-mse's "
  "diffusion_pytorch_model.safetensors (diffusers' layout), stabilityai/sd-vae-ft-mse-original's "
  "vae-ft-mse-840000-ema-pruned.safetensors (the original layout) or a full SD 1.x .safetensors checkpoint; "
  "download one where there is network access and copy it here (genjax downloads nothing)"
)


def _diffusers_key(path: Sequence[str]) -> str:
  """A Flax parameter path -> its diffusers state_dict name, e.g. ('encoder', 'down_blocks_0_resnets_1',
  'norm1', 'scale') -> 'encoder.down_blocks.0.resnets.1.norm1.weight'."""
  *modules, leaf = path
  name = _INDEXED.sub(r"\1.\2.", ".".join(modules) + ".").replace(".to_out.", ".to_out.0.")
  return name + ("bias" if leaf == "bias" else "weight")


def _ldm_key(key: str, num_levels: int) -> str:
  """A diffusers name -> the original CompVis/LDM name of the same tensor. The original numbers the
  decoder's levels from the narrowest (up.0 is diffusers' last up block)."""
  key = re.sub(r"mid_block\.resnets\.(\d)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", key)
  key = re.sub(
    r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.",
    lambda m: f"mid.attn_1.{_LDM_ATTENTION[m[1]]}.",
    key,
  )
  key = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", key)
  key = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", key)
  key = re.sub(r"up_blocks\.(\d+)\.resnets\.", lambda m: f"up.{num_levels - 1 - int(m[1])}.block.", key)
  key = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"up.{num_levels - 1 - int(m[1])}.upsample.", key)
  return key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")


def _torch_shape(flax_shape) -> tuple:
  """The torch shape of a Flax parameter: conv HWIO -> OIHW, dense [in, out] -> [out, in]."""
  if len(flax_shape) == 4:
    return (flax_shape[3], flax_shape[2], flax_shape[0], flax_shape[1])
  return tuple(reversed(flax_shape))


def _to_flax(array: np.ndarray, flax_shape) -> np.ndarray | None:
  """A stored torch-layout tensor -> the Flax layout, or None when its shape does not fit."""
  array = np.asarray(array, dtype=np.float32)
  if len(flax_shape) == 2 and array.ndim in (3, 4) and array.shape[2:] == (1,) * (array.ndim - 2):
    array = array.reshape(array.shape[:2])  # the original's attention: 1x1 convs, [C, C, 1, 1]
  if array.shape != _torch_shape(flax_shape):
    return None
  if array.ndim == 4:
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
  return np.ascontiguousarray(array.T)


def _safetensors_numpy():
  try:
    import safetensors.numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(
      "genjax.nn.autoencoder_kl reads and writes .safetensors files with the safetensors package: "
      "pip install safetensors==0.8.0"
    ) from None
  return safetensors_numpy


# safetensors' dtype names -> numpy's (bfloat16 from ml_dtypes, which JAX brings)
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64"}
_SAFETENSORS_DTYPES.update({"I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"})


def _read_safetensors(path: str) -> dict:
  """Every tensor of a .safetensors file as a numpy array."""
  safetensors_numpy = _safetensors_numpy()
  import safetensors  # pylint: disable=g-import-not-at-top

  try:
    try:
      return safetensors_numpy.load_file(path)
    except TypeError:  # numpy has no bfloat16: read the raw buffers with ml_dtypes' type
      import ml_dtypes  # pylint: disable=g-import-not-at-top

      with open(path, "rb") as f:
        raw = safetensors.deserialize(f.read())
  except safetensors.SafetensorError as e:
    raise errors.ConfigError(
      f"{path} is not a .safetensors file ({e}). load_weights reads safetensors only; the .ckpt checkpoints of "
      f"SD's VAE have .safetensors twins on the Hub. {_SD_VAE_SOURCES}."
    ) from None
  out = {}
  for name, t in raw:
    dtype = _SAFETENSORS_DTYPES.get(t["dtype"])
    if dtype is None:
      raise errors.ConfigError(f"{path}: tensor {name} is {t['dtype']}, which load_weights cannot read.")
    dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    out[name] = np.frombuffer(t["data"], dtype=dtype).reshape(t["shape"])
  return out


def _architecture(model: AutoencoderKL) -> str:
  return (
    f"AutoencoderKL(block_out_channels={tuple(model.block_out_channels)}, layers_per_block={model.layers_per_block}, "
    f"latent_channels={model.latent_channels}, in_channels={model.in_channels}, out_channels={model.out_channels})"
  )


def load_weights(path, model: AutoencoderKL | None = None) -> dict:
  """Reads `path`, a .safetensors file of an AutoencoderKL (SD's KL-f8 unless `model` says
  otherwise), into the variables {"params": ...} of `model`.

  Reads diffusers' layout (a model folder's diffusion_pytorch_model.safetensors; `path` may be
  that folder), its pre-0.14 attention names (query/key/value/proj_attn), and the original
  CompVis/LDM layout (encoder.down.0.block.0..., mid.attn_1.q as 1x1 convs, decoder.up numbered
  from the narrowest level), alone or inside a full SD checkpoint (first_stage_model.; the other
  models' tensors and the autoencoder's training loss, loss., are skipped). Every parameter must be
  in the file with its shape, and the file must hold nothing else of the autoencoder; norm_num_groups
  is not in the weights, so `model` must give the one they were trained with (32 for SD).
  Raises MissingError for a missing file and ConfigError for a file of another architecture.
  """
  path = os.fspath(path)
  if os.path.isdir(path) and os.path.isfile(os.path.join(path, "diffusion_pytorch_model.safetensors")):
    path = os.path.join(path, "diffusion_pytorch_model.safetensors")
  if not os.path.isfile(path):
    raise errors.MissingError(f"No weights file at {path}. {_SD_VAE_SOURCES}.")
  model = AutoencoderKL() if model is None else model
  tensors = _read_safetensors(path)
  for prefix in _CHECKPOINT_PREFIXES:
    if any(k.startswith(prefix) for k in tensors):
      tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
      break
  tensors = {k: v for k, v in tensors.items() if not k.startswith("loss.")}

  return {"params": traverse_util.unflatten_dict(_match(tensors, model, path))}


def _match(tensors: dict, model: AutoencoderKL, path: str) -> dict:
  """{Flax parameter path: array} from the file's tensors under any of the names the layouts give
  them; ConfigError listing what is missing, unexpected, of another shape or stored twice."""
  flat_shapes = traverse_util.flatten_dict(param_shapes(model))
  expected = {_diffusers_key(p): p for p in flat_shapes}
  num_levels = len(model.block_out_channels)
  aliases = {}  # a name the file may use -> the diffusers name
  for key in expected:
    aliases[key] = aliases[_ldm_key(key, num_levels)] = key
    for new, old in _DEPRECATED_ATTENTION.items():
      aliases[key.replace(f".attentions.0.{new}.", f".attentions.0.{old}.")] = key

  flat, seen, unexpected, wrong_shape, twice = {}, set(), [], [], []
  for name in sorted(tensors):
    key = aliases.get(name)
    if key is None:
      unexpected.append(name)
    elif key in seen:
      twice.append(name)
    else:
      seen.add(key)
      shape = flat_shapes[expected[key]].shape
      value = _to_flax(tensors[name], shape)
      if value is None:
        wrong_shape.append(f"{name} {list(tensors[name].shape)} (expected {list(_torch_shape(shape))})")
      else:
        flat[expected[key]] = jnp.asarray(value)
  missing = sorted(set(expected) - seen)
  problems = []
  if missing:
    problems.append(f"{len(missing)} of its {len(expected)} parameters are missing ({_few(missing)})")
  if unexpected:
    problems.append(f"{len(unexpected)} tensors are not this model's ({_few(unexpected)})")
  if wrong_shape:
    problems.append(f"{len(wrong_shape)} have other shapes ({_few(wrong_shape)})")
  if twice:
    problems.append(f"{len(twice)} are stored twice under two layouts' names ({_few(twice)})")
  if problems:
    raise errors.ConfigError(
      f"{path} does not hold the weights of {_architecture(model)}: {'; '.join(problems)}. Pass load_weights the "
      f"AutoencoderKL the file was saved from (a diffusers folder's config.json gives block_out_channels, "
      f"layers_per_block, latent_channels and norm_num_groups; SD's KL-f8 is AutoencoderKL()), or a file of it."
    )
  return flat


def _few(names: list, n: int = 4) -> str:
  return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def save_weights(variables, path) -> None:
  """Writes `variables` ({"params": ...} or the params alone) of an AutoencoderKL to `path` as a
  .safetensors file in diffusers' layout (float32, torch shapes), which diffusers'
  AutoencoderKL.load_state_dict and load_weights read."""
  safetensors_numpy = _safetensors_numpy()
  params = variables["params"] if "params" in variables else variables
  out = {}
  for p, value in traverse_util.flatten_dict(jax.device_get(params)).items():
    value = np.asarray(value, dtype=np.float32)
    value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    out[_diffusers_key(p)] = np.ascontiguousarray(value)
  safetensors_numpy.save_file(out, os.fspath(path), metadata={"format": "pt"})
