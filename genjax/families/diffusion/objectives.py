"""What the network predicts, the losses it is trained with and the terms of the variational bound.

The network's output is one of (Ho et al. 2020; Salimans and Ho 2022 for v):
  "eps": the noise eps in x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps,
  "x0":  the clean image x_0,
  "v":   v = sqrt(ab_t) eps - sqrt(1 - ab_t) x_0.
Every sampler and the bound work from the pair (x0_hat, eps_hat) that `to_x0_eps` derives.

The variational bound of one image (nats), L = L_T + sum_{t=1}^{T-1} L_t + L_0, with
  L_T = KL(q(x_T | x_0) || N(0, I)),
  L_t = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))   (index t here is the paper's t+1),
  L_0 = -log p(x_0 | x_1), DDPM's discretized Gaussian decoder over 256 bins in [-1, 1].
The reverse variances are fixed (Ho et al. sec. 3.2): "fixedlarge" sigma_t^2 = beta_t,
"fixedsmall" sigma_t^2 = beta_tilde_t; or learned, "learned_range" (Nichol and Dhariwal 2021,
eq. 15, as DiT trains them): the network's second half of channels v in [-1, 1] interpolates
log sigma_t^2 = frac log beta_t + (1 - frac) log beta_tilde_t, frac = (v + 1) / 2, and is trained
by the bound's term (the hybrid loss, `hybrid_vb`).
"""

import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors
from genjax.families.diffusion.schedules import Schedule, at, q_mean_variance, q_posterior

PREDICTIONS = ("eps", "x0", "v")
VARIANCES = ("fixedlarge", "fixedsmall", "learned_range")


def to_x0_eps(sched: Schedule, out: jax.Array, xt: jax.Array, t_B: jax.Array, prediction: str):
  """(x0_hat, eps_hat) from the network output `out` at (x_t, t); shapes as xt."""
  a = at(sched.sqrt_alphas_cumprod, t_B, xt.ndim)
  s = at(sched.sqrt_one_minus_alphas_cumprod, t_B, xt.ndim)
  if prediction == "eps":
    return (xt - s * out) / a, out
  if prediction == "x0":
    return out, (xt - a * out) / s
  if prediction == "v":
    return a * xt - s * out, s * xt + a * out
  raise errors.ConfigError(f"Unknown prediction {prediction!r}: expected one of {PREDICTIONS}.")


def eps_from_x0(sched: Schedule, x0: jax.Array, xt: jax.Array, t_B: jax.Array) -> jax.Array:
  """The noise that takes x0 to xt at step t (used after clipping x0 so the pair stays consistent)."""
  return (xt - at(sched.sqrt_alphas_cumprod, t_B, xt.ndim) * x0) / at(sched.sqrt_one_minus_alphas_cumprod, t_B, xt.ndim)


def target(sched: Schedule, x0: jax.Array, eps: jax.Array, t_B: jax.Array, prediction: str) -> jax.Array:
  """What the network should output for (x0, eps, t)."""
  if prediction == "eps":
    return eps
  if prediction == "x0":
    return x0
  if prediction == "v":
    return (
      at(sched.sqrt_alphas_cumprod, t_B, x0.ndim) * eps - at(sched.sqrt_one_minus_alphas_cumprod, t_B, x0.ndim) * x0
    )
  raise errors.ConfigError(f"Unknown prediction {prediction!r}: expected one of {PREDICTIONS}.")


def model_log_variance(sched: Schedule, t_B: jax.Array, variance: str, ndim: int = 4, v=None) -> jax.Array:
  """log sigma_t^2 of p(x_{t-1} | x_t), shaped [B, 1, ...] (learned: like v, the network's
  variance output). "fixedlarge" uses beta_tilde_1 at t = 0, as DDPM's code does, so the decoder's
  variance is not tiny."""
  if variance == "learned_range":
    if v is None:
      raise errors.ConfigError("variance 'learned_range' needs the network's variance output v.")
    frac = (v + 1.0) / 2.0
    max_log = at(jnp.log(sched.betas), t_B, ndim)
    return frac * max_log + (1.0 - frac) * at(sched.posterior_log_variance_clipped, t_B, ndim)
  if variance == "fixedlarge":
    table = jnp.log(jnp.concatenate([sched.posterior_variance[1:2], sched.betas[1:]]))
  elif variance == "fixedsmall":
    table = sched.posterior_log_variance_clipped
  else:
    raise errors.ConfigError(f"Unknown reverse variance {variance!r}: expected one of {VARIANCES}.")
  return at(table, t_B, ndim)


def p_mean_variance(sched: Schedule, x0_hat: jax.Array, xt: jax.Array, t_B: jax.Array, variance: str, v=None):
  """Mean and log-variance of the model's p(x_{t-1} | x_t): the posterior q(x_{t-1} | x_t, x0_hat)
  and the fixed or (with v) learned variance."""
  mean, _, _ = q_posterior(sched, x0_hat, xt, t_B)
  return mean, model_log_variance(sched, t_B, variance, xt.ndim, v)


def normal_kl(mean1, logvar1, mean2, logvar2):
  """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
  return 0.5 * (-1.0 + logvar2 - logvar1 + jnp.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * jnp.exp(-logvar2))


def _std_normal_cdf(x):
  return 0.5 * (1.0 + jax.lax.erf(x / np.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_scale: jax.Array) -> jax.Array:
  """log P(x) per element when x in [-1, 1] is one of 256 evenly spaced values (8-bit data
  scaled to [-1, 1]) and P integrates N(mean, e^(2 log_scale)) over x's bin of width 2/255; the
  end bins extend to -inf and +inf (Ho et al. 2020, eq. 13)."""
  centered = x - mean
  inv_std = jnp.exp(-log_scale)
  cdf_plus = _std_normal_cdf(inv_std * (centered + 1.0 / 255.0))
  cdf_min = _std_normal_cdf(inv_std * (centered - 1.0 / 255.0))
  log_cdf_plus = jnp.log(jnp.maximum(cdf_plus, 1e-12))
  log_one_minus_cdf_min = jnp.log(jnp.maximum(1.0 - cdf_min, 1e-12))
  log_probs = jnp.where(
    x < -0.999,
    log_cdf_plus,
    jnp.where(x > 0.999, log_one_minus_cdf_min, jnp.log(jnp.maximum(cdf_plus - cdf_min, 1e-12))),
  )
  return log_probs


def _sum_over_pixels(x):
  return jnp.sum(x, axis=tuple(range(1, x.ndim)))


def prior_term(sched: Schedule, x0: jax.Array) -> jax.Array:
  """L_T = KL(q(x_T | x_0) || N(0, I)) per example, nats f32[B]."""
  t_B = jnp.full((x0.shape[0],), sched.num_timesteps - 1, jnp.int32)
  mean, var = q_mean_variance(sched, x0, t_B)
  return _sum_over_pixels(normal_kl(mean, jnp.log(var) * jnp.ones_like(mean), 0.0, 0.0))


def vlb_term(
  sched: Schedule, x0: jax.Array, xt: jax.Array, t_B: jax.Array, x0_hat: jax.Array, variance: str, v=None
) -> jax.Array:
  """The bound's term at index t per example, nats f32[B]: L_t = KL(q || p) for t > 0 and the
  decoder's -log p(x_0 | x_1) at t = 0. x0_hat is the model's (possibly clipped) estimate, v its
  variance output (learned variances)."""
  true_mean, _, true_logvar = q_posterior(sched, x0, xt, t_B)
  model_mean, model_logvar = p_mean_variance(sched, x0_hat, xt, t_B, variance, v)
  kl = _sum_over_pixels(normal_kl(true_mean, true_logvar, model_mean, model_logvar))
  decoder_nll = -_sum_over_pixels(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar))
  return jnp.where(t_B == 0, decoder_nll, kl)


def split_output(out: jax.Array, variance: str):
  """(prediction, v): a learned-variance network's output is the prediction's channels, then as
  many of v in [-1, 1]; a fixed-variance network's is the prediction alone (v None)."""
  if variance != "learned_range":
    return out, None
  C = out.shape[-1] // 2
  return out[..., :C], out[..., C:]


def hybrid_vb(sched: Schedule, x0: jax.Array, xt: jax.Array, t_B: jax.Array, x0_hat: jax.Array, v: jax.Array):
  """The variance's training term of Nichol and Dhariwal's hybrid loss, as DiT computes it: the
  bound's term at t in bits per dimension with the mean's gradient stopped (x0_hat enters as a
  constant, unclipped), so only v learns from it: f32[B]."""
  nats_B = vlb_term(sched, x0, xt, t_B, jax.lax.stop_gradient(x0_hat), "learned_range", v)
  return nats_B / (np.prod(x0.shape[1:]) * np.log(2.0))
