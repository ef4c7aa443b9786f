"""EDM: the sigma-parameterised diffusion of Karras et al. 2022 ("Elucidating the Design Space of
Diffusion-Based Generative Models"), as pure functions.

Data x_0 is noised as x = x_0 + sigma n, n ~ N(0, I); a denoiser D(x; sigma) ~ E[x_0 | x] is built
from a raw network F by the preconditioning of the paper's Table 1,

  D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)),

with three choices of the four functions ("vp", "ve", "edm": `preconditioning`), the training
distribution of sigma (`training_sigmas`) and the loss weight lambda(sigma) of each
(`loss_weight`): the training loss is E_sigma,x0,n [lambda(sigma) |D(x0 + sigma n; sigma) - x0|^2].

Sampling integrates the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma from sigma_max
down to 0 on the time steps of eq. 5 (`karras_sigmas`, rho = 7):

  "heun"       Algorithm 1: deterministic, second order (Heun's correction on every step but the
               last, into sigma = 0): 2N - 1 denoiser evaluations for N steps.
  "euler"      the same steps, first order: N evaluations.
  "edm_sde"    Algorithm 2: Heun with stochastic churn (S_churn, S_tmin, S_tmax, S_noise): each step
               first raises sigma_i to sigma_hat = (1 + gamma_i) sigma_i by adding fresh noise.

A sampler takes `denoise(x, sigma_B) -> x0_hat` for any sigma-parameterised denoiser: an EDM
network (`denoiser_from_network`) or a discrete DDPM epsilon model seen as a VP denoiser
(`denoiser_from_ddpm`, with `round_sigma` snapping every sigma to one of its T noise levels, as
EDM's generate.py does for its discrete models). Each sampler is one `lax.scan`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors

PRECONDITIONINGS = ("edm", "vp", "ve")
SAMPLERS = ("heun", "euler", "edm_sde")
# Table 1's VP constants (EDM's training/networks.py VPPrecond defaults).
VP_BETA_D, VP_BETA_MIN, VP_EPSILON_T, VP_M = 19.9, 0.1, 1e-5, 1000


@dataclasses.dataclass(frozen=True)
class EDMConfig:
  """What an EDM formulation is trained and sampled with (defaults: the paper's CIFAR-10 "EDM"
  column, Table 1 and Table 5 / Algorithm 2's settings, with S_churn = 0: the deterministic sampler).

  preconditioning: "edm", "vp" or "ve" (Table 1's columns);
  sigma_data: the data's standard deviation (0.5 for images in [-1, 1]);
  p_mean, p_std: ln sigma ~ N(p_mean, p_std^2) while training ("edm");
  ve_sigma_min, ve_sigma_max: ln sigma ~ U(ln min, ln max) while training ("ve");
  sigma_min, sigma_max, rho: the sampler's time steps (eq. 5);
  s_churn, s_tmin, s_tmax, s_noise: Algorithm 2's stochasticity ("edm_sde" only)."""

  preconditioning: str = "edm"
  sigma_data: float = 0.5
  p_mean: float = -1.2
  p_std: float = 1.2
  ve_sigma_min: float = 0.02
  ve_sigma_max: float = 100.0
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  s_churn: float = 0.0
  s_tmin: float = 0.0
  s_tmax: float = float("inf")
  s_noise: float = 1.0


def check(cfg: EDMConfig, prefix: str = "config.model") -> None:
  """ValueError naming the field for a value that cannot work (before anything compiles)."""
  if cfg.preconditioning not in PRECONDITIONINGS:
    raise errors.ConfigError(
      f"{prefix}.preconditioning = {cfg.preconditioning!r} is not one of {', '.join(PRECONDITIONINGS)} "
      "(Karras et al. 2022, Table 1)."
    )
  if not cfg.sigma_data > 0:
    raise errors.ConfigError(f"{prefix}.sigma_data = {cfg.sigma_data} must be positive (0.5 for images in [-1, 1]).")
  if not cfg.p_std > 0:
    raise errors.ConfigError(f"{prefix}.p_std = {cfg.p_std} must be positive.")
  if not 0 < cfg.ve_sigma_min < cfg.ve_sigma_max:
    raise errors.ConfigError(
      f"{prefix}.ve_sigma_min = {cfg.ve_sigma_min} and ve_sigma_max = {cfg.ve_sigma_max} must satisfy "
      "0 < ve_sigma_min < ve_sigma_max."
    )
  check_steps(cfg.sigma_min, cfg.sigma_max, cfg.rho, cfg.s_churn, cfg.s_noise, prefix)
  if not 0 <= cfg.s_tmin < cfg.s_tmax:
    raise errors.ConfigError(
      f"{prefix}.s_tmin = {cfg.s_tmin} and s_tmax = {cfg.s_tmax} must satisfy 0 <= s_tmin < s_tmax: the "
      "sigmas between them get Algorithm 2's churn (s_tmax None: no upper bound)."
    )


def check_steps(sigma_min, sigma_max, rho, s_churn=0.0, s_noise=1.0, prefix="config.model") -> None:
  if not 0 < sigma_min < sigma_max:
    raise errors.ConfigError(
      f"{prefix}.sigma_min = {sigma_min} and sigma_max = {sigma_max} must satisfy 0 < sigma_min < "
      "sigma_max (EDM samples from sigma_max = 80 down to sigma_min = 0.002)."
    )
  if not rho > 0:
    raise errors.ConfigError(f"{prefix}.rho = {rho} must be positive (EDM uses rho = 7).")
  if not s_churn >= 0:
    raise errors.ConfigError(f"{prefix}.s_churn = {s_churn} must be zero (a deterministic sampler) or positive.")
  if not s_noise > 0:
    raise errors.ConfigError(f"{prefix}.s_noise = {s_noise} must be positive (1: no inflation of the added noise).")


# ----------------------------------------------------------------------------------------------
# Table 1: preconditioning, training noise levels, loss weights
# ----------------------------------------------------------------------------------------------


def vp_sigma(t):
  """VP's sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)."""
  return jnp.sqrt(jnp.expm1(0.5 * VP_BETA_D * t**2 + VP_BETA_MIN * t))


def vp_sigma_inv(sigma):
  """t with vp_sigma(t) = sigma."""
  return (jnp.sqrt(VP_BETA_MIN**2 + 2 * VP_BETA_D * jnp.log1p(sigma**2)) - VP_BETA_MIN) / VP_BETA_D


def preconditioning(kind: str, sigma, sigma_data: float = 0.5):
  """(c_skip, c_out, c_in, c_noise) at noise level sigma (any shape), Table 1."""
  if kind == "edm":
    s2 = sigma**2 + sigma_data**2
    return sigma_data**2 / s2, sigma * sigma_data / jnp.sqrt(s2), 1 / jnp.sqrt(s2), jnp.log(sigma) / 4
  if kind == "vp":
    return jnp.ones_like(sigma), -sigma, 1 / jnp.sqrt(sigma**2 + 1), (VP_M - 1) * vp_sigma_inv(sigma)
  if kind == "ve":
    return jnp.ones_like(sigma), sigma, jnp.ones_like(sigma), jnp.log(0.5 * sigma)
  raise errors.ConfigError(f"Unknown preconditioning {kind!r}: expected one of {', '.join(PRECONDITIONINGS)}.")


def loss_weight(kind: str, sigma, sigma_data: float = 0.5):
  """lambda(sigma): (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 for "edm", 1 / sigma^2 for "vp", "ve"."""
  if kind == "edm":
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
  if kind in ("vp", "ve"):
    return 1 / sigma**2
  raise errors.ConfigError(f"Unknown preconditioning {kind!r}: expected one of {', '.join(PRECONDITIONINGS)}.")


def training_sigma(key, cfg: EDMConfig):
  """One training noise level from `key` (a scalar): "edm" ln sigma ~ N(P_mean, P_std^2), "vp"
  sigma = sigma(t) with t ~ U(epsilon_t, 1), "ve" ln sigma ~ U(ln sigma_min, ln sigma_max)."""
  kind = cfg.preconditioning
  if kind == "edm":
    return jnp.exp(cfg.p_mean + cfg.p_std * jax.random.normal(key, ()))
  if kind == "vp":
    return vp_sigma(jax.random.uniform(key, (), minval=VP_EPSILON_T, maxval=1.0))
  if kind == "ve":
    return jnp.exp(jax.random.uniform(key, (), minval=math.log(cfg.ve_sigma_min), maxval=math.log(cfg.ve_sigma_max)))
  raise errors.ConfigError(f"Unknown preconditioning {kind!r}: expected one of {', '.join(PRECONDITIONINGS)}.")


def _col(sigma_B, ndim):
  return jnp.reshape(sigma_B, (-1,) + (1,) * (ndim - 1))


def denoiser_from_network(net: Callable, kind: str, sigma_data: float = 0.5) -> Callable:
  """denoise(x, sigma_B) = c_skip x + c_out net(c_in x, c_noise_B), for net(x_in, c_noise_B) -> raw output."""

  def denoise(x, sigma_B):
    c_skip, c_out, c_in, c_noise = preconditioning(kind, jnp.asarray(sigma_B, jnp.float32), sigma_data)
    out = net(_col(c_in, x.ndim) * x, c_noise).astype(jnp.float32)
    return _col(c_skip, x.ndim) * x + _col(c_out, x.ndim) * out

  return denoise


def weighted_loss(denoise: Callable, x0, sigma_B, noise, cfg: EDMConfig):
  """(lambda(sigma) |D(x0 + sigma n; sigma) - x0|^2, |D - x0|^2) per example, each averaged over
  the example's elements (EDM's training/loss.py sums them; with Adam the scale changes nothing
  but epsilon's weight): two f32[B]."""
  x = x0 + _col(sigma_B, x0.ndim) * noise
  mse_B = jnp.mean((denoise(x, sigma_B) - x0) ** 2, axis=tuple(range(1, x0.ndim)))
  return loss_weight(cfg.preconditioning, sigma_B, cfg.sigma_data) * mse_B, mse_B


# ----------------------------------------------------------------------------------------------
# A discrete DDPM epsilon model as a VP denoiser
# ----------------------------------------------------------------------------------------------


def ddpm_sigmas(alphas_cumprod) -> np.ndarray:
  """The noise level of each DDPM time step in EDM's x = x_0 + sigma n: sqrt((1 - ab_t) / ab_t), f64[T]."""
  ab = np.asarray(alphas_cumprod, np.float64)
  return np.sqrt((1.0 - ab) / ab)


def round_sigma_to(table_T: np.ndarray) -> Callable:
  """round_sigma(sigma) -> the entry of the (increasing) table nearest to sigma in log space."""
  log_table = jnp.asarray(np.log(table_T), jnp.float32)
  table = jnp.asarray(table_T, jnp.float32)

  def round_sigma(sigma):
    idx = jnp.argmin(jnp.abs(jnp.log(jnp.asarray(sigma, jnp.float32))[..., None] - log_table), axis=-1)
    return table[idx]

  return round_sigma


def denoiser_from_ddpm(model_fn: Callable, alphas_cumprod) -> Callable:
  """denoise(x, sigma_B) for a DDPM `model_fn(x_t, t_B) -> (x0_hat, eps_hat)` on T discrete steps:
  sigma is matched to its nearest time step t, x_t = sqrt(ab_t) x, and D = x0_hat (EDM's VP view
  of a DDPM: x = x_t / sqrt(ab_t) is x_0 + sigma_t eps). Call samplers with
  round_sigma=round_sigma_to(ddpm_sigmas(...)) so that each sigma is one of the T levels."""
  log_sigmas = jnp.asarray(np.log(ddpm_sigmas(alphas_cumprod)), jnp.float32)
  ab = jnp.asarray(np.asarray(alphas_cumprod, np.float64), jnp.float32)

  def denoise(x, sigma_B):
    t_B = jnp.argmin(jnp.abs(jnp.log(jnp.asarray(sigma_B, jnp.float32))[:, None] - log_sigmas[None]), axis=-1)
    x0_hat, _ = model_fn(_col(jnp.sqrt(ab[t_B]), x.ndim) * x, t_B.astype(jnp.int32))
    return x0_hat

  return denoise


# ----------------------------------------------------------------------------------------------
# Samplers (Algorithms 1 and 2)
# ----------------------------------------------------------------------------------------------


def karras_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> np.ndarray:
  """Eq. 5: sigma_i = (sigma_max^(1/rho) + i / (N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho
  for i < N, and sigma_N = 0: f64[N + 1], decreasing."""
  if num_steps < 1:
    raise errors.ConfigError(f"num_steps = {num_steps} must be at least 1.")
  check_steps(sigma_min, sigma_max, rho, prefix="sampler")
  i = np.arange(num_steps, dtype=np.float64)
  inv = 1.0 / rho
  frac = i / max(num_steps - 1, 1)
  sig = (sigma_max**inv + frac * (sigma_min**inv - sigma_max**inv)) ** rho
  return np.append(sig, 0.0)


def evaluations(sampler: str, num_steps: int) -> int:
  """Denoiser evaluations per sample: N for "euler", 2N - 1 for "heun" and "edm_sde"."""
  return num_steps if sampler == "euler" else 2 * num_steps - 1


def sample(
  denoise: Callable,
  rng,
  shape,
  *,
  sampler: str = "heun",
  num_steps: int = 18,
  sigma_min: float = 0.002,
  sigma_max: float = 80.0,
  rho: float = 7.0,
  s_churn: float = 0.0,
  s_tmin: float = 0.0,
  s_tmax: float = float("inf"),
  s_noise: float = 1.0,
  round_sigma: Optional[Callable] = None,
  x_init=None,
):
  """Integrate from x_0 ~ N(0, sigma_0^2 I) (or x_init, already at sigma_0) down to sigma = 0 with
  `sampler` ("heun", "euler" or "edm_sde"); returns f32[shape]. round_sigma snaps the time steps
  and each sigma_hat to the levels a discrete model knows (identity when None)."""
  if sampler not in SAMPLERS:
    raise errors.ConfigError(f"Unknown EDM sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}.")
  check_steps(sigma_min, sigma_max, rho, s_churn, s_noise, prefix="sampler")
  rnd = round_sigma or (lambda s: s)
  sig = karras_sigmas(num_steps, sigma_min, sigma_max, rho)
  t_steps = jnp.concatenate([rnd(jnp.asarray(sig[:-1], jnp.float32)), jnp.zeros((1,), jnp.float32)])
  stochastic = sampler == "edm_sde" and s_churn > 0
  gamma_max = min(s_churn / num_steps, math.sqrt(2.0) - 1.0)
  init_rng, loop_rng = jax.random.split(rng)
  B = shape[0]

  def d_of(x, s):
    return (x - denoise(x, jnp.full((B,), s, jnp.float32))) / s

  def step(x, inputs):
    i, t_cur, t_next = inputs
    if stochastic:
      gamma = jnp.where((t_cur >= s_tmin) & (t_cur <= s_tmax), gamma_max, 0.0)
      t_hat = rnd(t_cur + gamma * t_cur)
      eps = s_noise * jax.random.normal(jax.random.fold_in(loop_rng, i), x.shape)
      x_hat = x + jnp.sqrt(jnp.maximum(t_hat**2 - t_cur**2, 0.0)) * eps
    else:
      t_hat, x_hat = t_cur, x
    d = d_of(x_hat, t_hat)
    x_next = x_hat + (t_next - t_hat) * d
    if sampler != "euler":  # Heun's correction, except into sigma = 0 (lax.cond: not evaluated there)

      def correct(x_next):
        return x_hat + (t_next - t_hat) * (0.5 * d + 0.5 * d_of(x_next, t_next))

      x_next = jax.lax.cond(t_next > 0, correct, lambda x: x, x_next)
    return x_next, None

  if x_init is None:
    x_init = jax.random.normal(init_rng, shape) * t_steps[0]
  idx = jnp.arange(num_steps)
  x, _ = jax.lax.scan(step, jnp.asarray(x_init, jnp.float32), (idx, t_steps[:-1], t_steps[1:]))
  return x
