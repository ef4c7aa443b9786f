"""The Diffusion Transformer (DiT; Peebles and Xie 2023, "Scalable Diffusion Models with
Transformers"), as a Flax Linen module.

A port of facebookresearch/DiT's models.py (its DiT, DiTBlock, FinalLayer, TimestepEmbedder,
LabelEmbedder and get_2d_sincos_pos_embed, with timm's PatchEmbed, Attention and Mlp), with the
same layers, the same initialisation and, through `variables_from_torch_state_dict`, the same
weights: loaded from the reference's state_dict, the module computes the reference's output
(tests/nn/test_dit.py checks it against experiments/reference/torch_dit.py).

  patchify     p x p patches of the NHWC input, each flattened (row, column, channel) and mapped
               to the width D by one dense layer (timm's PatchEmbed convolution, whose kernel
               DiT initialises as a linear layer's)
  positions    fixed 2-D sine-cosine embeddings (MAE's), constants rather than parameters
  conditioning c = MLP(frequency embedding of t) + label embedding (a table of num_classes + 1
               rows: row num_classes is the null label of classifier-free guidance)
  blocks       depth adaLN-Zero blocks: from SiLU(c), a dense layer regresses the shift, scale and
               gate of the attention branch and of the MLP branch (GELU, tanh approximation);
               LayerNorms without affine parameters
  final layer  adaLN (shift, scale) LayerNorm, then a dense layer to p * p * out channels, folded
               back into an image

Shapes: B batch, H W C the image, p patch size, h = H/p, w = W/p, L = h * w tokens, D width
(hidden_size), N heads, K = D / N per-head width, F = mlp_ratio * D MLP units.

Parameters are float32; dense layers and attention compute in `dtype` (bfloat16 on
accelerators), while LayerNorm statistics and the modulation x (1 + scale) + shift are always
float32, and so is the output. Every
adaLN modulation layer and the final layer start at zero, so the freshly initialised network
outputs zeros and every block starts as the identity. Label dropout for classifier-free guidance
is not done here: the family replaces labels by the null label before calling the module.
"""

import math
import re
from typing import Any, Dict, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors

# DiT's LayerNorms (elementwise_affine=False, eps=1e-6) and its timestep embedding width.
LAYER_NORM_EPS = 1e-6
FREQUENCY_EMBEDDING_SIZE = 256

_xavier = nn.initializers.xavier_uniform()  # DiT's _basic_init for every nn.Linear
_normal_002 = nn.initializers.normal(0.02)  # the label table and the timestep MLP
_zeros = nn.initializers.zeros  # adaLN modulations and the final layer (adaLN-Zero)

# The paper's models (its Table 1, the reference's DiT_models): name -> DiT fields.
_SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
DIT_CONFIGS: Dict[str, Dict[str, int]] = {
  f"DiT-{size}/{p}": dict(depth=depth, hidden_size=hidden, num_heads=heads, patch_size=p)
  for size, (depth, hidden, heads) in _SIZES.items()
  for p in (2, 4, 8)
}

# Megatron's split of a transformer layer over the "model" mesh axis, in genjax's partition-rule
# format (genjax/core/sharding.py; the same as the GPT's): attention heads and MLP units. The
# adaLN modulations (D -> 6D per block, a third of a block's weights) have their outputs split
# like MLP units, so tensor parallelism does not keep that third whole on every device; their
# (B, 6D) output is tiny to gather. The patch, timestep and final layers are small and left to
# FSDP.
PARTITION_RULES = (
  (r"attn/qkv/kernel$", ("embed", None, "heads", None)),
  (r"attn/qkv/bias$", (None, "heads", None)),
  (r"attn/proj/kernel$", ("heads", None, "embed")),
  (r"mlp/fc1/kernel$", ("embed", "mlp")),
  (r"mlp/fc1/bias$", ("mlp",)),
  (r"mlp/fc2/kernel$", ("mlp", "embed")),
  (r"adaLN_modulation/kernel$", ("embed", "mlp")),
  (r"adaLN_modulation/bias$", ("mlp",)),
  (r"y_embedder/embedding$", ("vocab", "embed")),
)


def timestep_embedding(t_B: jax.Array, dim: int = FREQUENCY_EMBEDDING_SIZE, max_period: float = 10_000.0) -> jax.Array:
  """DiT's (GLIDE's) sinusoidal embedding of real times t_B: f32[B, dim], cosines in the first half,
  sines in the second, frequencies exp(-log(max_period) * i / (dim/2)) for i < dim/2; an odd dim
  gets a zero last column. (genjax.nn.embeddings.sinusoidal_embedding is DDPM's: sines first and
  a last frequency of exactly 1/max_period, so it differs.)"""
  half = dim // 2
  freqs_K = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles_BxK = jnp.asarray(t_B, jnp.float32)[:, None] * freqs_K[None, :]
  emb_BxE = jnp.concatenate([jnp.cos(angles_BxK), jnp.sin(angles_BxK)], axis=-1)
  if dim % 2:
    emb_BxE = jnp.concatenate([emb_BxE, jnp.zeros_like(emb_BxE[:, :1])], axis=-1)
  return emb_BxE


def _sincos_1d(dim: int, pos_M: np.ndarray) -> np.ndarray:
  """f64[M, dim]: sin(pos * omega) then cos(pos * omega), omega_i = 10000^(-i / (dim/2))."""
  omega_K = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
  angles_MxK = pos_M.astype(np.float64)[:, None] * omega_K[None, :]
  return np.concatenate([np.sin(angles_MxK), np.cos(angles_MxK)], axis=1)


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
  """DiT's fixed position embeddings (MAE's get_2d_sincos_pos_embed, for an h x w grid of tokens
  in row-major order): f32[h * w, dim], a numpy constant. The first dim/2 channels encode a token's
  column, the last dim/2 its row (the reference's meshgrid puts the width coordinate first)."""
  if dim % 4:
    raise errors.ConfigError(f"DiT's 2-D sine-cosine position embedding needs a width divisible by 4, got {dim}.")
  rows_LxI, cols_LxI = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
  emb = np.concatenate([_sincos_1d(dim // 2, cols_LxI.reshape(-1)), _sincos_1d(dim // 2, rows_LxI.reshape(-1))], 1)
  return emb.astype(np.float32)


def patchify(x_BxHxWxC: jax.Array, p: int) -> jax.Array:
  """Non-overlapping p x p patches: f[B, H, W, C] -> f[B, L, p * p * C], tokens in row-major order,
  each patch flattened as (row in patch, column in patch, channel)."""
  B, H, W, C = x_BxHxWxC.shape
  x = x_BxHxWxC.reshape(B, H // p, p, W // p, p, C).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(x_BxLxP: jax.Array, p: int, h: int, w: int) -> jax.Array:
  """The inverse of `patchify` for an h x w grid of tokens: f[B, L, p * p * C] -> f[B, h p, w p, C]."""
  B, L, P = x_BxLxP.shape
  C = P // (p * p)
  x = x_BxLxP.reshape(B, h, w, p, p, C).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(B, h * p, w * p, C)


def _modulated_norm(x_BxLxD: jax.Array, shift_BxD: jax.Array, scale_BxD: jax.Array, dtype) -> jax.Array:
  """LayerNorm without affine parameters (statistics in float32), then x (1 + scale) + shift per
  example (DiT's modulate); returned in `dtype`."""
  x = x_BxLxD.astype(jnp.float32)
  mean = x.mean(-1, keepdims=True)
  var = jnp.square(x - mean).mean(-1, keepdims=True)
  x = (x - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPS)
  x = x * (1.0 + scale_BxD.astype(jnp.float32)[:, None]) + shift_BxD.astype(jnp.float32)[:, None]
  return x.astype(dtype)


class Attention(nn.Module):
  """timm's Attention as DiT uses it (qkv with bias, no q/k norm, no dropout), over every token:
  x f[B,L,D] -> f[B,L,D]. The qkv kernel is f32[D, 3, N, K] and the output kernel f32[N, K, D]
  (the reference's Linear(D, 3D) and Linear(D, D), xavier-initialised on those 2-D shapes)."""

  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD):
    D = x_BxLxD.shape[-1]
    N = self.num_heads
    qkv_BxLx3xNxK = nn.DenseGeneral((3, N, D // N), dtype=self.dtype, kernel_init=_xavier, name="qkv")(x_BxLxD)
    q_BxLxNxK, k_BxLxNxK, v_BxLxNxK = (qkv_BxLx3xNxK[:, :, i] for i in range(3))
    y_BxLxNxK = jax.nn.dot_product_attention(q_BxLxNxK, k_BxLxNxK, v_BxLxNxK)
    return nn.DenseGeneral(D, axis=(-2, -1), dtype=self.dtype, kernel_init=_xavier, name="proj")(y_BxLxNxK)


class Mlp(nn.Module):
  """timm's Mlp as DiT uses it: Dense(D -> F), GELU (tanh approximation), Dense(F -> D)."""

  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD):
    h_BxLxF = nn.Dense(self.hidden, dtype=self.dtype, kernel_init=_xavier, name="fc1")(x_BxLxD)
    h_BxLxF = nn.gelu(h_BxLxF, approximate=True)
    return nn.Dense(x_BxLxD.shape[-1], dtype=self.dtype, kernel_init=_xavier, name="fc2")(h_BxLxF)


class DiTBlock(nn.Module):
  """An adaLN-Zero block: x + gate_a Attention(modulate(LN(x))), then x + gate_m Mlp(modulate(LN(x))),
  the six shift/scale/gate vectors regressed from SiLU(c). x f[B,L,D], c f[B,D] -> f[B,L,D]."""

  num_heads: int
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD, c_BxD):
    D = x_BxLxD.shape[-1]
    mod_Bx6D = nn.Dense(6 * D, dtype=self.dtype, kernel_init=_zeros, name="adaLN_modulation")(nn.silu(c_BxD))
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = jnp.split(mod_Bx6D, 6, axis=-1)
    h_BxLxD = Attention(self.num_heads, self.dtype, name="attn")(_modulated_norm(x_BxLxD, shift_a, scale_a, self.dtype))
    x_BxLxD = x_BxLxD + gate_a[:, None].astype(self.dtype) * h_BxLxD
    h_BxLxD = Mlp(int(D * self.mlp_ratio), self.dtype, name="mlp")(
      _modulated_norm(x_BxLxD, shift_m, scale_m, self.dtype)
    )
    return x_BxLxD + gate_m[:, None].astype(self.dtype) * h_BxLxD


class FinalLayer(nn.Module):
  """modulate(LN(x)) with an adaLN shift and scale, then Dense(D -> p * p * out_ch), both zero at
  initialisation. x f[B,L,D], c f[B,D] -> f32[B, L, p * p * out_ch]."""

  patch_size: int
  out_ch: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD, c_BxD):
    D = x_BxLxD.shape[-1]
    mod_Bx2D = nn.Dense(2 * D, dtype=self.dtype, kernel_init=_zeros, name="adaLN_modulation")(nn.silu(c_BxD))
    shift, scale = jnp.split(mod_Bx2D, 2, axis=-1)
    h_BxLxD = _modulated_norm(x_BxLxD, shift, scale, self.dtype)
    out = nn.Dense(self.patch_size**2 * self.out_ch, dtype=self.dtype, kernel_init=_zeros, name="linear")(h_BxLxD)
    return out.astype(jnp.float32)


class TimestepEmbedder(nn.Module):
  """t_B (real) -> frequency embedding f32[B, 256] -> Dense, SiLU, Dense -> f[B, D]."""

  hidden_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, t_B):
    dense = lambda name: nn.Dense(self.hidden_size, dtype=self.dtype, kernel_init=_normal_002, name=name)
    h_BxD = dense("mlp_0")(timestep_embedding(t_B).astype(self.dtype))
    return dense("mlp_2")(nn.silu(h_BxD))


class DiT(nn.Module):
  """DiT: (x_BxHxWxC, t_B[, label_B]) -> f32[B, H, W, out], the interface of every diffusion
  backbone in genjax.

  t_B holds real times (fed to the frequency embedding as DiT does: DDPM step indices, EDM's
  c_noise, ...). label_B (int in [0, num_classes], num_classes meaning "no label") is required
  when num_classes is set and ignored otherwise. `out` is out_ch (default: the input's C), doubled
  when learn_sigma (DiT's learned variance: the second half of the channels). `train` changes
  nothing (DiT has no dropout); `augment_BxA` must be None (it exists for the shared signature).
  """

  patch_size: int = 2
  hidden_size: int = 1152
  depth: int = 28
  num_heads: int = 16
  mlp_ratio: float = 4.0
  learn_sigma: bool = True
  out_ch: Optional[int] = None  # default: the input's channels (doubled when learn_sigma)
  num_classes: Optional[int] = None  # None = unconditional
  dtype: Any = jnp.float32

  def _check(self, H: int, W: int) -> None:
    p, D, N = self.patch_size, self.hidden_size, self.num_heads
    if p < 1 or H % p or W % p:
      raise errors.ConfigError(
        f"DiT: patch_size {p} does not divide the {H}x{W} input; pick a divisor of both "
        "(DiT uses 2, 4 or 8 on 32x32 latents)."
      )
    if D <= 0 or N <= 0 or D % N:
      raise errors.ConfigError(f"DiT: hidden_size {D} does not split into num_heads = {N} heads.")
    if D % 4:
      raise errors.ConfigError(f"DiT: hidden_size {D} must be divisible by 4 (2-D sine-cosine positions).")
    if self.depth < 1 or self.mlp_ratio <= 0:
      raise errors.ConfigError(f"DiT: depth {self.depth} and mlp_ratio {self.mlp_ratio} must be positive.")

  @nn.compact
  def __call__(self, x_BxHxWxC, t_B, label_B=None, train: bool = False, augment_BxA=None):
    del train  # no dropout in DiT
    if augment_BxA is not None:
      raise errors.ConfigError("DiT takes no augmentation labels (augment_BxA); set config.model.augment_dim = 0.")
    B, H, W, C = x_BxHxWxC.shape
    self._check(H, W)
    p, D = self.patch_size, self.hidden_size
    h, w = H // p, W // p
    out_ch = (self.out_ch or C) * (2 if self.learn_sigma else 1)

    x_BxLxD = nn.Dense(D, dtype=self.dtype, kernel_init=_xavier, name="x_embedder")(
      patchify(x_BxHxWxC.astype(self.dtype), p)
    )
    x_BxLxD = x_BxLxD + jnp.asarray(sincos_pos_embed_2d(D, h, w), self.dtype)[None]

    t_B = jnp.broadcast_to(jnp.asarray(t_B, jnp.float32), (B,))
    c_BxD = TimestepEmbedder(D, self.dtype, name="t_embedder")(t_B)
    if self.num_classes is not None:
      if label_B is None:
        raise errors.ConfigError("DiT: this model is class-conditional; pass label_B (num_classes for 'no label').")
      table = nn.Embed(self.num_classes + 1, D, dtype=self.dtype, embedding_init=_normal_002, name="y_embedder")
      c_BxD = c_BxD + table(jnp.asarray(label_B, jnp.int32))

    for i in range(self.depth):
      x_BxLxD = DiTBlock(self.num_heads, self.mlp_ratio, self.dtype, name=f"blocks_{i}")(x_BxLxD, c_BxD)
    out_BxLxP = FinalLayer(p, out_ch, self.dtype, name="final_layer")(x_BxLxD, c_BxD)
    return unpatchify(out_BxLxP, p, h, w)


# Every name of the reference's state_dict (timm's Attention and Mlp inside the blocks).
_TORCH_KEYS = (
  r"pos_embed|x_embedder\.proj\.(weight|bias)|t_embedder\.mlp\.[02]\.(weight|bias)|y_embedder\.embedding_table\.weight"
  r"|final_layer\.(linear|adaLN_modulation\.1)\.(weight|bias)"
  r"|blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2)|adaLN_modulation\.1)\.(weight|bias)"
)


def variables_from_torch_state_dict(state_dict: Mapping[str, Any], num_heads: int) -> Dict[str, Any]:
  """The Flax variables ({"params": ...}) of the reference DiT's `state_dict` (torch tensors or
  numpy arrays keyed by the reference's names, e.g. the released DiT-XL-2-256x256.pt), for a
  `DiT` with the same sizes and `num_heads` (not recorded in the weights). The frozen pos_embed
  buffer is skipped (genjax computes the same constants); any other key this mapping does not know
  raises ConfigError, so a checkpoint of another model is not half-loaded. The label table keeps
  its rows: DiT's num_classes + 1 (with the null label last) is genjax's num_classes convention."""
  arrays = {
    k: np.asarray(v.detach().float().cpu().numpy() if hasattr(v, "detach") else v, np.float32)
    for k, v in state_dict.items()
  }
  unknown = sorted(k for k in arrays if not re.fullmatch(_TORCH_KEYS, k))
  if unknown:
    raise errors.ConfigError(f"the DiT state_dict has entries genjax's DiT does not know: {', '.join(unknown[:8])}.")

  def take(name):
    if name not in arrays:
      raise errors.ConfigError(f"the DiT state_dict has no {name!r}; is it a facebookresearch/DiT checkpoint?")
    return arrays[name]

  def linear(name, out_shape=None, in_shape=None):
    w_OxI, b_O = take(f"{name}.weight"), take(f"{name}.bias")
    kernel = w_OxI.T
    if in_shape is not None:
      kernel = kernel.reshape(*in_shape, kernel.shape[-1])
    if out_shape is not None:
      kernel, b_O = kernel.reshape(*kernel.shape[:-1], *out_shape), b_O.reshape(out_shape)
    return {"kernel": kernel, "bias": b_O}

  w_DxCxPxP = take("x_embedder.proj.weight")
  D, C, p, _ = w_DxCxPxP.shape
  if D % num_heads:
    raise errors.ConfigError(f"the checkpoint's width {D} does not split into num_heads = {num_heads} heads.")
  N, K = num_heads, D // num_heads
  params = {
    "x_embedder": {
      "kernel": w_DxCxPxP.transpose(2, 3, 1, 0).reshape(p * p * C, D),
      "bias": take("x_embedder.proj.bias"),
    },
    "t_embedder": {"mlp_0": linear("t_embedder.mlp.0"), "mlp_2": linear("t_embedder.mlp.2")},
    "final_layer": {
      "adaLN_modulation": linear("final_layer.adaLN_modulation.1"),
      "linear": linear("final_layer.linear"),
    },
  }
  if "y_embedder.embedding_table.weight" in arrays:
    params["y_embedder"] = {"embedding": take("y_embedder.embedding_table.weight")}
  depth = 1 + max((int(m.group(1)) for k in arrays if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
  for i in range(depth):
    b = f"blocks.{i}"
    params[f"blocks_{i}"] = {
      "adaLN_modulation": linear(f"{b}.adaLN_modulation.1"),
      "attn": {"qkv": linear(f"{b}.attn.qkv", out_shape=(3, N, K)), "proj": linear(f"{b}.attn.proj", in_shape=(N, K))},
      "mlp": {"fc1": linear(f"{b}.mlp.fc1"), "fc2": linear(f"{b}.mlp.fc2")},
    }
  return {"params": params}
