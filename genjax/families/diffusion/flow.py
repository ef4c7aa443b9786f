"""Flow matching (Lipman et al. 2023, "Flow Matching for Generative Modeling") and rectified flow
(Liu et al. 2023, "Flow Straight and Fast"), as pure functions; the ODEs are solved by diffrax.

Time runs from noise to data, as in Lipman et al.: x_0 ~ N(0, I), x_1 a data point, and the
conditional optimal-transport path with sigma_min (the paper's eq. 20 and 22) is

  x_t = (1 - (1 - sigma_min) t) x_0 + t x_1,      u_t = x_1 - (1 - sigma_min) x_0,

the velocity a network v(x, t) regresses (the conditional flow matching loss, eq. 23):
E_t,x0,x1 |v(x_t, t) - u_t|^2. sigma_min = 0 is rectified flow's straight interpolation. t is drawn
uniformly, or logit-normally as Stable Diffusion 3 does (Esser et al. 2024, section 3.1:
t = sigmoid(m + s n), n ~ N(0, 1); SD3 runs time the other way, data to noise, which turns its
location m into -m here; m = 0 is the same in both).

Sampling integrates dx/dt = v(x, t) from t = 0 to 1 with diffrax: "euler" and "heun" at fixed
steps (N and 2N network evaluations), "dopri5" adaptively with rtol / atol (Dormand-Prince 5(4)).
The fixed steps are uniform in t, or (time_grid "edm") EDM's rho = 7 noise levels (Karras et al.
2022, eq. 5, sigma from 80 to 0.002, then 0) mapped to t = 1 - sigma / (1 + sigma), the grid the
flow-matching code samples CIFAR-10 with (facebookresearch/flow_matching,
examples/image/training/edm_time_discretization.py); that grid starts at t = 1/81, where the noise
stands for x as in that code.

The log-likelihood is the instantaneous change of variables (Chen et al. 2018):
d log p_t(x_t) / dt = -div v(x_t, t), so, integrating the augmented ODE from the data at t = 1
back to t = 0,

  log p_1(x) = log N(x(0); 0, I) - integral_0^1 div v(x(t), t) dt,

with the divergence exact (the Jacobian's trace, D forward passes: small dimensions) or
Hutchinson's estimate eps^T (dv/dx) eps with a fixed set of Rademacher probes drawn once per solve
(FFJORD, Grathwohl et al. 2019), which is unbiased for every probe count.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from genjax import errors

TIME_SAMPLINGS = ("uniform", "logit_normal")
TIME_GRIDS = ("uniform", "edm")
SAMPLERS = ("euler", "heun", "dopri5")
DIVERGENCES = ("exact", "hutchinson")


@dataclasses.dataclass(frozen=True)
class FlowConfig:
  """What a flow-matching formulation is trained and solved with.

  sigma_min: the OT path's final width (0: rectified flow; Lipman et al. use 1e-4 on images);
  time_sampling: "uniform" (Lipman et al.) or "logit_normal" (SD3) with logit_mean, logit_std
  (logit_mean = logit_std = 1.2 is the flow-matching code's "skewed" times, 1 / (1 + sigma) with
  ln sigma ~ N(-1.2, 1.2^2), EDM's training noise levels); time_grid: the fixed-step samplers'
  times, "uniform" or "edm"; rtol, atol: dopri5's tolerances (sampling and likelihood);
  max_steps: its bound on steps."""

  sigma_min: float = 0.0
  time_sampling: str = "uniform"
  logit_mean: float = 0.0
  logit_std: float = 1.0
  rtol: float = 1e-5
  atol: float = 1e-5
  max_steps: int = 4096
  time_grid: str = "uniform"


def check(cfg: FlowConfig, prefix: str = "config.model.flow_") -> None:
  """ValueError naming the field for a value that cannot work (before anything compiles)."""
  if not 0 <= cfg.sigma_min < 1:
    raise errors.ConfigError(f"{prefix}sigma_min = {cfg.sigma_min} must lie in [0, 1) (0: rectified flow).")
  if cfg.time_sampling not in TIME_SAMPLINGS:
    raise errors.ConfigError(
      f"{prefix}time_sampling = {cfg.time_sampling!r} is not one of {', '.join(TIME_SAMPLINGS)}."
    )
  if cfg.time_grid not in TIME_GRIDS:
    raise errors.ConfigError(f"{prefix}time_grid = {cfg.time_grid!r} is not one of {', '.join(TIME_GRIDS)}.")
  if not cfg.logit_std > 0:
    raise errors.ConfigError(f"{prefix}logit_std = {cfg.logit_std} must be positive (SD3 uses 1.0).")
  for name in ("rtol", "atol"):
    if not getattr(cfg, name) > 0:
      raise errors.ConfigError(
        f"{prefix}{name} = {getattr(cfg, name)} must be positive (e.g. 1e-5), a tolerance of dopri5."
      )
  if cfg.max_steps < 1:
    raise errors.ConfigError(f"{prefix}max_steps = {cfg.max_steps} must be at least 1.")


def training_time(key, cfg: FlowConfig):
  """One training time t in [0, 1): uniform, or sigmoid(m + s n) (logit-normal)."""
  if cfg.time_sampling == "uniform":
    return jax.random.uniform(key, ())
  return jax.nn.sigmoid(cfg.logit_mean + cfg.logit_std * jax.random.normal(key, ()))


def _col(t_B, ndim):
  return jnp.reshape(t_B, (-1,) + (1,) * (ndim - 1))


def path(noise, x1, t_B, sigma_min: float = 0.0):
  """(x_t, u_t) on the conditional OT path from `noise` (x_0) to the data x1, at times t_B."""
  t = _col(jnp.asarray(t_B, jnp.float32), x1.ndim)
  x_t = (1.0 - (1.0 - sigma_min) * t) * noise + t * x1
  return x_t, x1 - (1.0 - sigma_min) * noise


def loss_terms(velocity: Callable, x1, t_B, noise, sigma_min: float = 0.0):
  """The conditional flow matching loss per example, mean over dimensions: f32[B], for
  velocity(x_BxD..., t_B) -> v."""
  x_t, u_t = path(noise, x1, t_B, sigma_min)
  v = velocity(x_t, t_B).astype(jnp.float32)
  return jnp.mean((v - u_t) ** 2, axis=tuple(range(1, x1.ndim)))


MISSING_DIFFRAX = (
  "Flow matching solves its ODEs with diffrax, which is not installed here: pip install diffrax "
  "(requirements.txt pins it; pure Python, it needs no accelerator build)."
)


def diffrax_available() -> bool:
  try:
    import diffrax  # noqa: F401
  except ImportError:
    return False
  return True


def _diffrax():
  try:
    import diffrax
  except ImportError as e:  # genjax's other families run without it
    raise ImportError(MISSING_DIFFRAX) from e
  return diffrax


def _solver(sampler: str):
  if sampler not in SAMPLERS:
    raise errors.ConfigError(f"sampler = {sampler!r} is not one of {', '.join(SAMPLERS)}.")
  diffrax = _diffrax()
  return {"euler": diffrax.Euler, "heun": diffrax.Heun, "dopri5": diffrax.Dopri5}[sampler]()


def edm_time_grid(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
  """num_steps + 1 times from 0 to 1: EDM's num_steps noise levels (eq. 5) and 0, as t = 1 - sigma /
  (1 + sigma) (float64 numpy, as the flow-matching code computes them)."""
  import numpy as np

  i = np.arange(num_steps, dtype=np.float64)
  root = sigma_max ** (1 / rho) + i / max(num_steps - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
  sigmas = np.concatenate([root**rho, [0.0]])
  return 1.0 - np.clip(sigmas / (1.0 + sigmas), 0.0, 1.0)


def _solve(fn, y0, t0, t1, *, sampler, num_steps, rtol, atol, max_steps, time_grid="uniform"):
  """diffrax.diffeqsolve of dy/dt = fn(t, y) from t0 to t1: (y(t1), accepted steps)."""
  solver, diffrax = _solver(sampler), _diffrax()
  if sampler == "dopri5":
    kwargs = dict(dt0=None, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps)
  else:
    if num_steps < 1:
      raise errors.ConfigError(f"num_steps = {num_steps} must be at least 1.")
    if time_grid == "edm":
      if (t0, t1) != (0.0, 1.0):
        raise errors.ConfigError("time_grid = 'edm' runs from noise (t = 0) to data (t = 1) only.")
      # the grid starts at sigma_max = 80, t = 1/81: the noise stands for x there, as in the
      # flow-matching code (odeint over its time grid)
      ts = edm_time_grid(num_steps)
      t0, t1 = float(ts[0]), float(ts[-1])
      controller = diffrax.StepTo(ts=jnp.asarray(ts, jnp.float32))
      kwargs = dict(dt0=None, stepsize_controller=controller, max_steps=num_steps)
    else:
      kwargs = dict(dt0=(t1 - t0) / num_steps, stepsize_controller=diffrax.ConstantStepSize(), max_steps=num_steps)
  sol = diffrax.diffeqsolve(
    diffrax.ODETerm(lambda t, y, args: fn(t, y)),
    solver,
    t0=t0,
    t1=t1,
    y0=y0,
    saveat=diffrax.SaveAt(t1=True),
    throw=False,  # a solve that runs out of steps reports -1 steps (callers say what to change)
    **kwargs,
  )
  y1 = jax.tree_util.tree_map(lambda leaf: leaf[-1], sol.ys)
  ok = sol.result == diffrax.RESULTS.successful
  return y1, jnp.where(ok, sol.stats["num_accepted_steps"], -1)


def out_of_steps(max_steps: int, rtol: float, atol: float, what: str) -> str:
  """The paragraph for a dopri5 solve that needed more than max_steps steps."""
  return (
    f"{what}: dopri5 did not reach the end of the ODE within config.model.flow_max_steps = {max_steps} "
    f"steps at rtol = {rtol:g}, atol = {atol:g}. Raise --config.model.flow_max_steps, loosen "
    "--config.model.flow_rtol / flow_atol, or sample with a fixed-step solver (--sampler heun)."
  )


def evaluations(sampler: str, num_steps: int) -> int:
  """Network evaluations of a fixed-step sampler for num_steps steps (dopri5: adaptive)."""
  return {"euler": num_steps, "heun": 2 * num_steps}[sampler]


def sample(
  velocity: Callable,
  noise,
  *,
  sampler: str = "heun",
  num_steps: int = 18,
  rtol: float = 1e-5,
  atol: float = 1e-5,
  max_steps: int = 4096,
  time_grid: str = "uniform",
):
  """x(1) from x(0) = noise, for velocity(x, t_B) -> v: (x1, the solver's accepted steps, -1 when
  dopri5 ran out of its max_steps);
  euler and heun step on `time_grid` ("uniform" or "edm", see edm_time_grid)."""
  B = noise.shape[0]
  fn = lambda t, x: velocity(x, jnp.full((B,), t, jnp.float32)).astype(jnp.float32)
  return _solve(
    fn,
    noise,
    0.0,
    1.0,
    sampler=sampler,
    num_steps=num_steps,
    rtol=rtol,
    atol=atol,
    max_steps=max_steps,
    time_grid=time_grid,
  )


def exact_divergence(velocity: Callable, x, t_B):
  """div_x v(x, t) per example, exactly (the trace of each example's Jacobian): f32[B]."""

  def one(x_i, t_i):
    f = lambda z: velocity(z.reshape((1,) + x_i.shape), t_i[None])[0].reshape(-1)
    return jnp.trace(jax.jacfwd(f)(x_i.reshape(-1)))

  return jax.vmap(one)(x, t_B)


def hutchinson_divergence(velocity: Callable, x, t_B, probes_KxB):
  """(v(x, t), Hutchinson's estimate of div v per example: the mean over the K probes of
  eps^T (dv/dx) eps, one Jacobian-vector product each): (v, f32[B])."""
  f = lambda z: velocity(z, t_B).astype(jnp.float32)
  v, jvp = jax.vmap(lambda eps: jax.jvp(f, (x,), (eps,)), out_axes=(None, 0))(probes_KxB)
  axes = tuple(range(2, probes_KxB.ndim))
  return v, jnp.mean(jnp.sum(probes_KxB * jvp, axis=axes), axis=0)


def rademacher_probes(key, num_probes: int, shape):
  """num_probes Rademacher (+-1) tensors of `shape`: f32[K, *shape]."""
  return jax.random.rademacher(key, (num_probes, *shape), jnp.float32)


def log_likelihood(
  velocity: Callable,
  x1,
  *,
  divergence: str = "exact",
  probes=None,
  sampler: str = "dopri5",
  num_steps: int = 100,
  rtol: float = 1e-5,
  atol: float = 1e-5,
  max_steps: int = 4096,
):
  """log p_1(x1) per example in nats (f32[B]) under the flow of `velocity`, by integrating the
  augmented ODE (x, the divergence's integral) from t = 1 back to t = 0: (log p, accepted steps;
  -1 when dopri5 ran out of its max_steps).
  divergence "exact" or "hutchinson" (then `probes`, f32[K, *x1.shape], fixed for the solve)."""
  if divergence not in DIVERGENCES:
    raise errors.ConfigError(f"divergence = {divergence!r} is not one of {', '.join(DIVERGENCES)}.")
  if divergence == "hutchinson" and probes is None:
    raise errors.ConfigError("divergence = 'hutchinson' needs probes (rademacher_probes(key, K, x1.shape)).")
  B = x1.shape[0]

  def fn(t, y):
    x, _ = y
    t_B = jnp.full((B,), t, jnp.float32)
    if divergence == "exact":
      return velocity(x, t_B).astype(jnp.float32), exact_divergence(velocity, x, t_B)
    return hutchinson_divergence(velocity, x, t_B, probes)

  (x0, integral_B), steps = _solve(
    fn,
    (x1.astype(jnp.float32), jnp.zeros((B,), jnp.float32)),
    1.0,
    0.0,
    sampler=sampler,
    num_steps=num_steps,
    rtol=rtol,
    atol=atol,
    max_steps=max_steps,
  )
  # the solve ran from 1 to 0, so integral_B = int_1^0 div dt = -int_0^1 div dt
  D = math.prod(x1.shape[1:])
  log_prior = -0.5 * jnp.sum(x0.reshape(B, -1) ** 2, axis=1) - 0.5 * D * math.log(2 * math.pi)
  return log_prior + integral_B, steps


def dequantized_bits_per_dim(log_p_B, num_dims: int, bin_width: float = 2.0 / 255.0):
  """Bits/dim of 8-bit data from a density's log p at uniformly dequantized points (images in
  [-1, 1], bins 2/255 wide): -(log p / D + log bin_width) / log 2, an upper bound on the discrete
  model's -log2 P per dimension, comparable with DDPM's discrete bound."""
  return -(log_p_B / num_dims + math.log(bin_width)) / math.log(2.0)
