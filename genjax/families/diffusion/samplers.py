"""Samplers for a trained denoiser, each a whole reverse loop in one `lax.scan`, by name.

A sampler is called as

  sampler(model_fn, sched, rng, shape, *, num_steps, eta, clip_denoised, variance) -> x0 f32[shape]

where `model_fn(x_BxHxWxC, t_B) -> (x0_hat, eps_hat)` evaluates the network once (classifier-free
guidance already folded in); a learned-variance model's returns (x0_hat, eps_hat, v) and "ddpm"
uses v. The loop body is traced once, so a sampler costs exactly one
`model_fn` evaluation per step, inside whatever `jax.jit` the caller wraps it in:

  "ddpm"       ancestral sampling of Ho et al. 2020 (Algorithm 2), all T steps, or num_steps of
               them with the schedule respaced to those steps (Nichol and Dhariwal 2021; DiT
               samples with 250 of 1000).
  "ddim"       Song et al. 2021, eq. 12, on num_steps time steps; eta = 0 is deterministic, eta = 1
               on all T steps is the same Markov chain as "ddpm" with the "fixedsmall" variance.
  "dpmpp_2m"   DPM-Solver++(2M) of Lu et al. 2022 (Algorithm 2, multistep second order in the
               data prediction), on num_steps time steps evenly spaced in log-SNR (as its paper
               and k-diffusion space them): num_steps network evaluations, the same numbers as
               diffusers' DPMSolverMultistepScheduler (dpmsolver++, solver_order 2) of
               num_inference_steps = num_steps on those time steps (see `dpmpp_2m`).

With clip_denoised, x0_hat is clipped to [-1, 1] and eps_hat recomputed from it, so that each
sampler's (x0_hat, eps_hat) pair stays consistent with x_t.
"""

from typing import Callable, Dict

import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors
from genjax.families.diffusion.objectives import eps_from_x0, p_mean_variance
from genjax.families.diffusion.schedules import Schedule, respace


def timesteps(T: int, num_steps: int) -> np.ndarray:
  """num_steps time-step indices from T-1 (pure noise) down to 0, evenly spaced: int32[num_steps]."""
  if not 1 <= num_steps <= T:
    raise errors.ConfigError(f"num_steps = {num_steps} must lie in [1, T = {T}].")
  return np.round(np.linspace(T - 1, 0, num_steps)).astype(np.int32)


def logsnr_timesteps(sched: Schedule, num_steps: int) -> np.ndarray:
  """num_steps time-step indices from T-1 down to 0 whose log-SNRs lambda = log(alpha / sigma) are
  evenly spaced (each index the nearest to its lambda; nudged up where two would coincide, so
  there are exactly num_steps; one step is [T-1], as in diffusers): int32[num_steps]."""
  T = sched.num_timesteps
  timesteps(T, num_steps)  # checks the range
  if isinstance(sched.alphas_cumprod, jax.core.Tracer):
    raise errors.ConfigError(
      "dpmpp_2m spaces its steps by the schedule's log-SNR, which must be known when tracing: "
      "build the schedule inside the jitted function (schedules.make_schedule) or close over it, "
      "instead of passing it as a traced argument."
    )
  ab = np.asarray(sched.alphas_cumprod, np.float64)
  lam = 0.5 * (np.log(ab) - np.log1p(-ab))  # decreasing in t
  grid = np.linspace(lam[T - 1], lam[0], num_steps)
  ts = np.round(np.interp(grid, lam[::-1], np.arange(T - 1, -1, -1, dtype=np.float64))).astype(np.int64)
  ts[0] = T - 1
  for i in range(1, num_steps):  # strictly decreasing and within range: at most T - 1 - i ...
    ts[i] = min(ts[i], ts[i - 1] - 1)
  ts[-1] = 0 if num_steps > 1 else T - 1
  for i in range(num_steps - 2, -1, -1):  # ... and at least num_steps - 1 - i
    ts[i] = max(ts[i], ts[i + 1] + 1)
  return ts.astype(np.int32)


def _denoise(model_fn, sched, x, t, clip_denoised, with_variance=False):
  t_B = jnp.full((x.shape[0],), t, jnp.int32)
  out = model_fn(x, t_B)
  x0_hat, eps_hat = out[:2]
  if clip_denoised:
    x0_hat = jnp.clip(x0_hat, -1.0, 1.0)
    eps_hat = eps_from_x0(sched, x0_hat, x, t_B)
  if with_variance:
    return x0_hat, eps_hat, t_B, (out[2] if len(out) > 2 else None)
  return x0_hat, eps_hat, t_B


def ddpm(model_fn, sched: Schedule, rng, shape, *, num_steps=None, eta=None, clip_denoised=True, variance="fixedlarge"):
  """Ancestral sampling: x_{k-1} = mu(x_k, x0_hat) + sigma_k z (no noise at the last step), over
  all T steps, or over num_steps of them (timesteps) on the schedule respaced to those steps; the
  network sees the original step indices, the posterior and variances are the respaced ones."""
  T = sched.num_timesteps
  kept = timesteps(T, num_steps or T)[::-1].copy()  # ascending
  small = sched if len(kept) == T else respace(sched, kept)
  init_rng, loop_rng = jax.random.split(rng)

  def step(x, k_and_t):
    k, t = k_and_t
    x0_hat, _, _, v = _denoise(model_fn, sched, x, t, clip_denoised, with_variance=True)
    k_B = jnp.full((x.shape[0],), k, jnp.int32)
    mean, log_var = p_mean_variance(small, x0_hat, x, k_B, variance, v)
    z = jax.random.normal(jax.random.fold_in(loop_rng, t), x.shape)
    return mean + (k > 0) * jnp.exp(0.5 * log_var) * z, None

  ks = jnp.arange(len(kept) - 1, -1, -1)
  x, _ = jax.lax.scan(step, jax.random.normal(init_rng, shape), (ks, jnp.asarray(kept)[ks]))
  return x


def ddim(model_fn, sched: Schedule, rng, shape, *, num_steps=50, eta=0.0, clip_denoised=True, variance=None):
  """DDIM: x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - s^2) eps_hat + s z, with
  s = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev); ab_prev = 1 after the last step."""
  T = sched.num_timesteps
  ts = timesteps(T, num_steps or T)
  ts_prev = np.append(ts[1:], -1).astype(np.int32)
  ab = sched.alphas_cumprod
  init_rng, loop_rng = jax.random.split(rng)

  def step(x, t_and_prev):
    t, t_prev = t_and_prev
    x0_hat, eps_hat, _ = _denoise(model_fn, sched, x, t, clip_denoised)
    ab_t = ab[t]
    ab_prev = jnp.where(t_prev >= 0, ab[jnp.maximum(t_prev, 0)], 1.0)
    sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
    z = jax.random.normal(jax.random.fold_in(loop_rng, t), x.shape)
    direction = jnp.sqrt(jnp.maximum(1 - ab_prev - sigma**2, 0.0)) * eps_hat
    return jnp.sqrt(ab_prev) * x0_hat + direction + sigma * z, None

  x, _ = jax.lax.scan(step, jax.random.normal(init_rng, shape), (jnp.asarray(ts), jnp.asarray(ts_prev)))
  return x


def dpmpp_2m(model_fn, sched: Schedule, rng, shape, *, num_steps=20, eta=None, clip_denoised=True, variance=None):
  """DPM-Solver++(2M) with `num_steps` = N network evaluations, at the time steps
  t_0 = T-1 > t_1 > ... > t_{N-1} = 0 of `logsnr_timesteps` (for N <= 20 the indices of diffusers'
  use_lu_lambdas=True; beyond, diffusers repeats indices near 0 where these are nudged apart).

  With lambda = log(alpha / sigma), alpha_t = sqrt(ab_t), sigma_t = sqrt(1 - ab_t), the evaluation
  at t_i gives D_i = x0_hat, and each of the N - 1 steps from t_i to t_{i+1}, h = lambda_{i+1} -
  lambda_i, is
    x_{i+1} = (sigma_{i+1} / sigma_i) x_i - alpha_{i+1} (e^{-h} - 1) D,
  D = D_0 at the first step (first order), else (1 + 1/(2r)) D_i - 1/(2r) D_{i-1} with
  r = h_{i-1} / h (second order, the step into t = 0 too). The evaluation at t = 0 returns its
  x0_hat: the step to sigma = 0 (lambda = infinity), where the update of any order is x0_hat.

  This is diffusers' DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2)
  with its defaults (final_sigmas_type="zero", lower_order_final=True) run for
  num_inference_steps = N on these time steps, step for step: its lower_order_final lowers the
  order of the final step to sigma = 0 (always) and of the one before only for solver_order 3
  below 15 steps. (DPM-Solver's own code, which ends at t_N without the denoising to sigma = 0,
  lowers its last step below 10 steps.)"""
  T = sched.num_timesteps
  ts = logsnr_timesteps(sched, num_steps or T)
  ts_next = np.append(ts[1:], ts[-1]).astype(np.int32)  # the last entry is unused: the step returns x0_hat
  is_last = np.arange(len(ts)) == len(ts) - 1
  first_order = np.arange(len(ts)) == 0
  alpha, sigma = sched.sqrt_alphas_cumprod, sched.sqrt_one_minus_alphas_cumprod
  lam = jnp.log(alpha) - jnp.log(sigma)

  def step(carry, inputs):
    x, x0_prev, h_prev = carry
    t, t_next, last, first = inputs
    x0_hat, _, _ = _denoise(model_fn, sched, x, t, clip_denoised)
    h = lam[t_next] - lam[t]
    r = h_prev / jnp.where(last, 1.0, h)
    second = (1 + 1 / (2 * r)) * x0_hat - 1 / (2 * r) * x0_prev
    d = jnp.where(first, x0_hat, second)
    x_next = sigma[t_next] / sigma[t] * x - alpha[t_next] * jnp.expm1(-h) * d
    x_next = jnp.where(last, x0_hat, x_next)
    return (x_next, x0_hat, h), None

  x_T = jax.random.normal(rng, shape)
  carry = (x_T, jnp.zeros(shape), jnp.ones(()))
  inputs = tuple(jnp.asarray(a) for a in (ts, ts_next, is_last, first_order))
  (x, _, _), _ = jax.lax.scan(step, carry, inputs)
  return x


SAMPLERS: Dict[str, Callable] = {"ddpm": ddpm, "ddim": ddim, "dpmpp_2m": dpmpp_2m}


def get(name: str) -> Callable:
  if name not in SAMPLERS:
    raise errors.ConfigError(f"Unknown sampler {name!r}: expected one of {', '.join(SAMPLERS)}.")
  return SAMPLERS[name]
