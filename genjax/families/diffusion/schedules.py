"""Noise schedules and the Gaussian forward process of DDPM.

Time steps are indices t in {0, ..., T-1}; index t is the paper's step t+1, so x at index 0 is
the paper's x_1 (the latent the decoder p(x_0 | x_1) reads) and index T-1 is x_T. With
alpha_bar_t = prod_{s<=t} (1 - beta_s):

  q(x_t | x_0)          = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
  q(x_{t-1} | x_t, x_0) = N(coef_x0_t x_0 + coef_xt_t x_t, beta_tilde_t I),
      beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t),
      coef_x0_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t),
      coef_xt_t = sqrt(1 - beta_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)
  (Ho et al. 2020, eqs. 4, 6, 7), with alpha_bar_{-1} = 1.

Tables are computed in float64 numpy and stored float32 (as the reference code does).
"""

import math
from typing import Callable, Dict

import flax
import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
  """Ho et al. 2020: betas linear from 1e-4 to 0.02 for T = 1000. For other T the end points are
  scaled by 1000 / T (Nichol and Dhariwal 2021) so that alpha_bar_T stays close to zero."""
  scale = 1000.0 / T
  return np.linspace(scale * beta_start, scale * beta_end, T, dtype=np.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
  """Nichol and Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2),
  beta_t = 1 - alpha_bar(t+1) / alpha_bar(t), clipped at 0.999 to avoid a singular end."""
  f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2
  return np.array([min(1 - f(i + 1) / f(i), max_beta) for i in range(T)], dtype=np.float64)


BETAS: Dict[str, Callable[..., np.ndarray]] = {"linear": linear_betas, "cosine": cosine_betas}


@flax.struct.dataclass
class Schedule:
  """Per-time-step tables, each f32[T]. Index them with `at(table, t_B)`."""

  betas: jax.Array
  alphas_cumprod: jax.Array  # alpha_bar_t
  alphas_cumprod_prev: jax.Array  # alpha_bar_{t-1}, 1 at t = 0
  sqrt_alphas_cumprod: jax.Array
  sqrt_one_minus_alphas_cumprod: jax.Array
  posterior_variance: jax.Array  # beta_tilde_t (0 at t = 0)
  posterior_log_variance_clipped: jax.Array  # log beta_tilde_t, with t = 0 set to t = 1's value
  posterior_mean_coef_x0: jax.Array
  posterior_mean_coef_xt: jax.Array

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]


def make_schedule(name: str, T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
  """The tables for `name` ("linear" or "cosine") with T steps."""
  if name == "linear":
    betas = linear_betas(T, beta_start, beta_end)
  elif name == "cosine":
    betas = cosine_betas(T)
  else:
    raise errors.ConfigError(f"Unknown noise schedule {name!r}: expected one of {', '.join(BETAS)}.")
  if T < 2:
    raise errors.ConfigError(f"A diffusion needs at least 2 time steps, got T={T}.")
  ab = np.cumprod(1.0 - betas)
  ab_prev = np.append(1.0, ab[:-1])
  post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
  # Concrete arrays even when built inside a jit trace, so host code (e.g. the log-SNR step grid
  # of DPM-Solver++) can read the tables of a schedule made inside the caller's jit.
  with jax.ensure_compile_time_eval():
    return _tables(betas, ab, ab_prev, post_var)


def respace(sched: Schedule, kept_ascending) -> Schedule:
  """The schedule of the kept time steps alone (Nichol and Dhariwal 2021, section 4; improved-
  diffusion's respace.py, which DiT samples with): alpha_bar of each kept step is the original's,
  beta_k = 1 - alpha_bar_k / alpha_bar_{k-1}. Index k of the result is original step kept[k]."""
  with jax.ensure_compile_time_eval():
    # alpha_bar in float64 from the betas (the float32 table loses beta_0 = 1 - alpha_bar_0)
    ab = np.cumprod(1.0 - np.asarray(sched.betas, np.float64))[np.asarray(kept_ascending)]
    ab_prev = np.append(1.0, ab[:-1])
    betas = 1.0 - ab / ab_prev
    post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
    return _tables(betas, ab, ab_prev, post_var)


def _tables(betas, ab, ab_prev, post_var) -> Schedule:
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  return Schedule(
    betas=f32(betas),
    alphas_cumprod=f32(ab),
    alphas_cumprod_prev=f32(ab_prev),
    sqrt_alphas_cumprod=f32(np.sqrt(ab)),
    sqrt_one_minus_alphas_cumprod=f32(np.sqrt(1.0 - ab)),
    posterior_variance=f32(post_var),
    posterior_log_variance_clipped=f32(np.log(np.append(post_var[1], post_var[1:]))),
    posterior_mean_coef_x0=f32(np.sqrt(ab_prev) * betas / (1.0 - ab)),
    posterior_mean_coef_xt=f32(np.sqrt(1.0 - betas) * (1.0 - ab_prev) / (1.0 - ab)),
  )


def at(table_T: jax.Array, t_B: jax.Array, ndim: int = 4) -> jax.Array:
  """table_T[t_B] shaped [B, 1, ..., 1] (ndim axes in all) to broadcast against x_BxHxWxC."""
  return table_T[t_B].reshape((-1,) + (1,) * (ndim - 1))


def q_sample(sched: Schedule, x0: jax.Array, t_B: jax.Array, noise: jax.Array) -> jax.Array:
  """A draw of x_t ~ q(x_t | x_0) given the standard normal `noise` (same shape as x0)."""
  return (
    at(sched.sqrt_alphas_cumprod, t_B, x0.ndim) * x0 + at(sched.sqrt_one_minus_alphas_cumprod, t_B, x0.ndim) * noise
  )


def q_mean_variance(sched: Schedule, x0: jax.Array, t_B: jax.Array):
  """Mean and variance of q(x_t | x_0): (f[B,...], f[B,1,...])."""
  return at(sched.sqrt_alphas_cumprod, t_B, x0.ndim) * x0, 1.0 - at(sched.alphas_cumprod, t_B, x0.ndim)


def q_posterior(sched: Schedule, x0: jax.Array, xt: jax.Array, t_B: jax.Array):
  """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (Ho et al. eq. 7)."""
  mean = at(sched.posterior_mean_coef_x0, t_B, x0.ndim) * x0 + at(sched.posterior_mean_coef_xt, t_B, x0.ndim) * xt
  return mean, at(sched.posterior_variance, t_B, x0.ndim), at(sched.posterior_log_variance_clipped, t_B, x0.ndim)
