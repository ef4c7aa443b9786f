"""Negative log-likelihood bounds of a diffusion model, in nats and bits per dimension.

`full_bound` computes every term of DDPM's variational bound for a batch (T network evaluations
per image, one `lax.scan`); `bound_estimate` is the unbiased one-evaluation estimate
L_T + T * L_t with t uniform, cheap enough for periodic evaluation. Both take
`model_fn(x_t, t_B) -> (x0_hat, eps_hat)` and images x0 in [-1, 1] (8-bit values), and both
clip x0_hat to [-1, 1] when asked, as DDPM's evaluation does.
"""

import math

import jax
import jax.numpy as jnp

from genjax.families.diffusion.objectives import prior_term, vlb_term
from genjax.families.diffusion.schedules import Schedule, q_sample


def nats_to_bits_per_dim(nats: jax.Array, num_dims: int) -> jax.Array:
  return nats / (num_dims * math.log(2.0))


def _x0_hat(model_fn, xt, t_B, clip_denoised):
  """(x0_hat, possibly clipped; the variance output v of a learned-variance model, else None)."""
  out = model_fn(xt, t_B)
  x0_hat = jnp.clip(out[0], -1.0, 1.0) if clip_denoised else out[0]
  return x0_hat, (out[2] if len(out) > 2 else None)


def full_bound(
  model_fn, sched: Schedule, x0_BxHxWxC: jax.Array, rng: jax.Array, *, variance: str, clip_denoised: bool = True
) -> dict:
  """Every term of the bound for each image, nats f32[B] each:
  prior (L_T), diffusion (sum of L_t over indices t = 1..T-1), decoder (L_0), total."""

  def term(_, t):
    return None, bound_term(model_fn, sched, x0_BxHxWxC, rng, t, variance=variance, clip_denoised=clip_denoised)

  _, terms_TxB = jax.lax.scan(term, None, jnp.arange(sched.num_timesteps))
  prior_B = prior_term(sched, x0_BxHxWxC)
  diffusion_B, decoder_B = terms_TxB[1:].sum(axis=0), terms_TxB[0]
  return {"prior": prior_B, "diffusion": diffusion_B, "decoder": decoder_B, "total": prior_B + diffusion_B + decoder_B}


def bound_term(
  model_fn, sched: Schedule, x0_BxHxWxC: jax.Array, rng: jax.Array, t, *, variance: str, clip_denoised: bool = True
) -> jax.Array:
  """The bound's term L_t of each image at time index t (noise from fold_in(rng, t)), nats f32[B]:
  one network evaluation; `full_bound` scans it over t = 0 .. T-1."""
  noise = jax.random.normal(jax.random.fold_in(rng, t), x0_BxHxWxC.shape)
  t_B = jnp.full((x0_BxHxWxC.shape[0],), t, jnp.int32)
  xt = q_sample(sched, x0_BxHxWxC, t_B, noise)
  x0_hat, v = _x0_hat(model_fn, xt, t_B, clip_denoised)
  return vlb_term(sched, x0_BxHxWxC, xt, t_B, x0_hat, variance, v)


def bound_estimate(
  model_fn,
  sched: Schedule,
  x0_BxHxWxC: jax.Array,
  t_B: jax.Array,
  noise: jax.Array,
  *,
  variance: str,
  clip_denoised: bool = True,
) -> jax.Array:
  """An unbiased estimate of the whole bound from one term per image: L_T + T * L_t, nats f32[B],
  for t_B uniform on {0, ..., T-1} and standard normal `noise`."""
  xt = q_sample(sched, x0_BxHxWxC, t_B, noise)
  x0_hat, v = _x0_hat(model_fn, xt, t_B, clip_denoised)
  l_t = vlb_term(sched, x0_BxHxWxC, xt, t_B, x0_hat, variance, v)
  return prior_term(sched, x0_BxHxWxC) + sched.num_timesteps * l_t
