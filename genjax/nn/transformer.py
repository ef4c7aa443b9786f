"""Pre-LayerNorm transformer blocks (GPT-2 style) shared by the families.

Shapes: B batch, L length, D width, F = mlp_ratio * D, T = B * L tokens.

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

# GPT-2's and nanoGPT's LayerNorm epsilon (Flax's default is 1e-6).
LAYER_NORM_EPS = 1e-5


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


class MLP(nn.Module):
  """Dense(D -> F), GELU, Dense(F -> D)."""

  mlp_ratio: int = 4
  use_bias: bool = True
  dtype: Any = jnp.float32
  init_std: float = 0.02
  out_init_std: float = 0.02

  @nn.compact
  def __call__(self, x_BxLxD):
    D = x_BxLxD.shape[-1]
    # Token-major 2-D matrices (a free reshape): with 3-D activations XLA:CPU lays out the
    # backward pass's weight-gradient products through transposing copies that recompute the
    # GELU derivative, and the MLP's gradient took 3x as long (9.1 ms vs 3.0 ms at 768 x 128).
    x_TxD = x_BxLxD.reshape(-1, D)
    h_TxF = nn.Dense(
      self.mlp_ratio * D,
      use_bias=self.use_bias,
      dtype=self.dtype,
      kernel_init=nn.initializers.normal(self.init_std),
      name="fc",
    )(x_TxD)
    h_TxF = gelu(h_TxF)
    y_TxD = nn.Dense(
      D, use_bias=self.use_bias, dtype=self.dtype, kernel_init=nn.initializers.normal(self.out_init_std), name="proj"
    )(h_TxF)
    return y_TxD.reshape(x_BxLxD.shape)


class Block(nn.Module):
  """x + Attention(LayerNorm(x)), then x + MLP(LayerNorm(x)), each branch with dropout.

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

  @nn.compact
  def __call__(
    self, x_BxLxD, positions_L, cache: Optional[Cache] = None, dropout_keys_B: Optional[jax.Array] = None, site: int = 0
  ):
    h_BxLxD = nn.LayerNorm(LAYER_NORM_EPS, use_bias=self.use_bias, dtype=self.dtype, name="ln_attn")(x_BxLxD)
    h_BxLxD, cache = SelfAttention(
      self.num_heads,
      causal=self.causal,
      use_bias=self.use_bias,
      rotary=self.rotary,
      dtype=self.dtype,
      implementation=self.attention_implementation,
      out_init_std=self.out_init_std,
      name="attn",
    )(h_BxLxD, positions_L, cache)
    x_BxLxD = x_BxLxD + example_dropout(h_BxLxD, self.dropout, dropout_keys_B, site)
    h_BxLxD = nn.LayerNorm(LAYER_NORM_EPS, use_bias=self.use_bias, dtype=self.dtype, name="ln_mlp")(x_BxLxD)
    h_BxLxD = MLP(self.mlp_ratio, use_bias=self.use_bias, dtype=self.dtype, out_init_std=self.out_init_std, name="mlp")(
      h_BxLxD
    )
    x_BxLxD = x_BxLxD + example_dropout(h_BxLxD, self.dropout, dropout_keys_B, site + 1)
    return x_BxLxD, cache
