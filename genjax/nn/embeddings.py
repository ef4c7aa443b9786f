"""Embeddings shared by families: the sinusoidal embedding of a (diffusion) time step."""

import math

import jax
import jax.numpy as jnp

from genjax import errors


def sinusoidal_embedding(t_B: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """The Transformer's sinusoidal position embedding of the scalars `t_B` (Vaswani et al. 2017),
  as DDPM uses it for the time step: f32[B, dim], sines in the first half, cosines in the second.

  `t_B` may be integers (time-step indices) or floats; frequencies run geometrically from 1 down
  to 1 / max_period so that both neighbouring and distant time steps are told apart.
  """
  if dim % 2:
    raise errors.ConfigError(f"sinusoidal_embedding needs an even dim, got {dim}.")
  half = dim // 2
  # DDPM's code divides by (half - 1) so the last frequency is exactly 1 / max_period.
  freqs_H = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1))
  angles_BxH = jnp.asarray(t_B, jnp.float32)[:, None] * freqs_H[None, :]
  return jnp.concatenate([jnp.sin(angles_BxH), jnp.cos(angles_BxH)], axis=-1)
