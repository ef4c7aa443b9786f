"""Pre-norm transformer blocks shared by the families: GPT-2's (LayerNorm, GELU MLP) by
default, Llama's with the options (RMSNorm, SwiGLU MLP, grouped-query attention, rotary base).

Shapes: B batch, L length, D width, F the MLP's hidden width (mlp_hidden_size), T = B * L tokens.

Dropout here takes one PRNG key per example (`keys_B`, e.g. from
genjax.train.parallel.example_keys) instead of Flax's per-call rng, so that a batch split over
devices under pmap draws exactly the masks one device would draw for the whole batch.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax import errors
from genjax.nn.attention import Cache, SelfAttention

# GPT-2's and nanoGPT's LayerNorm epsilon (Flax's default is 1e-6); Llama 3's RMSNorm epsilon too.
LAYER_NORM_EPS = 1e-5

NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu", "relu2")


def example_dropout(x_Bx: jax.Array, rate: float, keys_B: Optional[jax.Array], site: int) -> jax.Array:
  """Inverted dropout with an independent mask per example: example b's mask is drawn from
  fold_in(keys_B[b], site), so every dropout site in a model (numbered by `site`) differs.
  No-op when rate is 0 or keys_B is None (evaluation)."""
  if rate == 0.0 or keys_B is None:
    return x_Bx
  if not 0.0 < rate < 1.0:
    raise errors.ConfigError(f"dropout rate must lie in [0, 1), got {rate}.")
  shape = x_Bx.shape[1:]
  keep_Bx = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, site), 1.0 - rate, shape))(keys_B)
  return jnp.where(keep_Bx, x_Bx / (1.0 - rate), 0).astype(x_Bx.dtype)


def gelu(x):
  """The exact (erf) GELU, x/2 (1 + erf(x/sqrt 2)), as nanoGPT's nn.GELU() evaluates it; GPT-2 used
  the tanh approximation. jax.nn.gelu(approximate=False) evaluates the same function through erfc
  (accurate to a few float32 ulps further into the negative tail, where GELU is ~0), whose
  branches XLA:CPU does not vectorize: 2.7x slower on the CPU GPT's 768 x 512 activations."""
  return x * 0.5 * (1.0 + jax.lax.erf(x * (2.0**-0.5)).astype(x.dtype))


def make_norm(kind: str, use_bias: bool, dtype, name: str) -> nn.Module:
  """The pre-norm of a block: LayerNorm (GPT-2; with a bias when use_bias) or RMSNorm (Llama:
  x / rms(x) * scale, no bias, no centring), both with epsilon 1e-5."""
  if kind == "rmsnorm":
    return nn.RMSNorm(LAYER_NORM_EPS, dtype=dtype, name=name)
  if kind != "layernorm":
    raise errors.ConfigError(f"norm {kind!r} is unknown: use one of {', '.join(NORMS)}.")
  return nn.LayerNorm(LAYER_NORM_EPS, use_bias=use_bias, dtype=dtype, name=name)


def mlp_hidden_size(kind: str, width: int, mlp_ratio: int = 4, hidden: Optional[int] = None) -> int:
  """F, the MLP's hidden width: `hidden` when given, else mlp_ratio * width; for SwiGLU, Llama's
  rule (its FeedForward): two thirds of that, so that its three matrices hold about as many
  parameters as the two of a GELU MLP, rounded up to a multiple of 256 (Llama's multiple_of)."""
  if hidden is not None:
    return hidden
  if kind != "swiglu":
    return mlp_ratio * width
  return 256 * -(-int(2 * mlp_ratio * width / 3) // 256)


class MLP(nn.Module):
  """Dense(D -> F), activation, Dense(F -> D). kind "gelu" (GPT-2): "fc", GELU, "proj"; "relu2"
  (modded-nanogpt, So et al. 2021's Primer): "fc", relu(h)^2, "proj"; "swiglu" (Shazeer 2020,
  Llama): silu("gate" x) * "up" x, then "proj". F from mlp_hidden_size."""

  mlp_ratio: int = 4
  use_bias: bool = True
  dtype: Any = jnp.float32
  init_std: float = 0.02
  out_init_std: float = 0.02
  kind: str = "gelu"
  hidden: Optional[int] = None

  @nn.compact
  def __call__(self, x_BxLxD):
    D = x_BxLxD.shape[-1]
    F = mlp_hidden_size(self.kind, D, self.mlp_ratio, self.hidden)
    dense = lambda features, std, name: nn.Dense(
      features, use_bias=self.use_bias, dtype=self.dtype, kernel_init=nn.initializers.normal(std), name=name
    )
    # Token-major 2-D matrices (a free reshape): with 3-D activations XLA:CPU lays out the
    # backward pass's weight-gradient products through transposing copies that recompute the
    # GELU derivative, and the MLP's gradient took 3x as long (9.1 ms vs 3.0 ms at 768 x 128).
    x_TxD = x_BxLxD.reshape(-1, D)
    if self.kind == "swiglu":
      h_TxF = jax.nn.silu(dense(F, self.init_std, "gate")(x_TxD)) * dense(F, self.init_std, "up")(x_TxD)
    elif self.kind == "relu2":
      h_TxF = jnp.square(jax.nn.relu(dense(F, self.init_std, "fc")(x_TxD)))
    elif self.kind == "gelu":
      h_TxF = gelu(dense(F, self.init_std, "fc")(x_TxD))
    else:
      raise errors.ConfigError(f"MLP kind {self.kind!r} is unknown: use one of {', '.join(MLPS)}.")
    y_TxD = dense(D, self.out_init_std, "proj")(h_TxF)
    return y_TxD.reshape(x_BxLxD.shape)


class Block(nn.Module):
  """x + Attention(Norm(x)), then x + MLP(Norm(x)), each branch with dropout.

  __call__(x f[B,L,D], positions i32[L], cache=None, dropout_keys_B=None, site=0)
    -> (x f[B,L,D], cache or None). `site` numbers this block's two dropout sites (site, site+1).
  """

  num_heads: int
  mlp_ratio: int = 4
  dropout: float = 0.0
  causal: bool = True
  use_bias: bool = True
  rotary: bool = False
  dtype: Any = jnp.float32
  attention_implementation: Optional[str] = "auto"
  out_init_std: float = 0.02
  norm: str = "layernorm"  # or "rmsnorm"
  mlp_kind: str = "gelu"  # or "swiglu", "relu2"
  mlp_hidden: Optional[int] = None  # None: mlp_hidden_size's rule
  num_kv_heads: Optional[int] = None  # None: num_heads
  qk_norm: bool = False
  rope_base: float = 10000.0

  @nn.compact
  def __call__(
    self, x_BxLxD, positions_L, cache: Optional[Cache] = None, dropout_keys_B: Optional[jax.Array] = None, site: int = 0
  ):
    h_BxLxD = make_norm(self.norm, self.use_bias, self.dtype, "ln_attn")(x_BxLxD)
    h_BxLxD, cache = SelfAttention(
      self.num_heads,
      causal=self.causal,
      use_bias=self.use_bias,
      rotary=self.rotary,
      dtype=self.dtype,
      implementation=self.attention_implementation,
      out_init_std=self.out_init_std,
      num_kv_heads=self.num_kv_heads,
      qk_norm=self.qk_norm,
      rope_base=self.rope_base,
      name="attn",
    )(h_BxLxD, positions_L, cache)
    x_BxLxD = x_BxLxD + example_dropout(h_BxLxD, self.dropout, dropout_keys_B, site)
    h_BxLxD = make_norm(self.norm, self.use_bias, self.dtype, "ln_mlp")(x_BxLxD)
    h_BxLxD = MLP(
      self.mlp_ratio,
      use_bias=self.use_bias,
      dtype=self.dtype,
      out_init_std=self.out_init_std,
      kind=self.mlp_kind,
      hidden=self.mlp_hidden,
      name="mlp",
    )(h_BxLxD)
    x_BxLxD = x_BxLxD + example_dropout(h_BxLxD, self.dropout, dropout_keys_B, site + 1)
    return x_BxLxD, cache
