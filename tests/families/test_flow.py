"""Flow matching's pure functions against answers known in closed form. For Gaussian data
N(mu, S) and the OT path x_t = a_t x_0 + t x_1 (a_t = 1 - (1 - sigma_min) t), x_t is Gaussian with
covariance C_t = a_t^2 I + t^2 S, and the marginal velocity E[u_t | x_t = x] is

  v(x, t) = mu + (t S - (1 - sigma_min) a_t I) C_t^-1 (x - t mu),

whose flow maps x_0 to x_1 = mu + (S + sigma_min^2 I)^(1/2) x_0 exactly (C_t and S commute), so
p_1 = N(mu, S + sigma_min^2 I): every sampler's error and the ODE likelihood can be measured
against numpy's answers without sampling noise."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.families.diffusion import flow

pytest.importorskip("diffrax", reason="flow matching's ODE solvers come from diffrax (requirements.txt)")
D = 3
RNG = np.random.default_rng(0)
_Q, _ = np.linalg.qr(RNG.normal(size=(D, D)))
EIGS = np.array([0.1, 0.3, 1.0])
MU = np.array([0.3, -0.2, 0.1])
COV = _Q @ np.diag(EIGS) @ _Q.T


def ideal_velocity(sigma_min):
  cov = jnp.asarray(COV, jnp.float32)
  eye = jnp.eye(D, dtype=jnp.float32)
  mu = jnp.asarray(MU, jnp.float32)

  def velocity(x, t_B):
    def one(xi, t):
      a = 1.0 - (1.0 - sigma_min) * t
      c = a**2 * eye + t**2 * cov
      return mu + (t * cov - (1.0 - sigma_min) * a * eye) @ jnp.linalg.solve(c, xi - t * mu)

    return jax.vmap(one)(x, t_B)

  return velocity


def exact_map(x0, sigma_min):
  w, q = np.linalg.eigh(COV + sigma_min**2 * np.eye(D))
  return MU + x0 @ (q @ np.diag(np.sqrt(w)) @ q.T)


X0 = RNG.normal(size=(16, D))


def map_error(sampler, num_steps, sigma_min=0.0, **kw):
  x1, _ = jax.jit(lambda x: flow.sample(ideal_velocity(sigma_min), x, sampler=sampler, num_steps=num_steps, **kw))(
    jnp.asarray(X0, jnp.float32)
  )
  return np.abs(np.asarray(x1, np.float64) - exact_map(X0, sigma_min)).max()


def test_euler_is_first_order_and_heun_second_order(sigma_min=0.1):
  euler = [map_error("euler", n, sigma_min) for n in (8, 16, 32)]
  heun = [map_error("heun", n, sigma_min) for n in (8, 16, 32)]
  for coarse, fine in zip(euler, euler[1:]):
    assert 1.6 < coarse / fine < 2.4, euler
  for coarse, fine in zip(heun, heun[1:]):
    assert 3.2 < coarse / fine < 4.8, heun
  assert heun[-1] < euler[-1] / 20


def test_dopri5_reaches_its_tolerance_in_few_steps():
  err = map_error("dopri5", 0, rtol=1e-6, atol=1e-6)
  assert err < 2e-5
  _, steps = flow.sample(ideal_velocity(0.0), jnp.asarray(X0, jnp.float32), sampler="dopri5", rtol=1e-6, atol=1e-6)
  assert 1 <= int(steps) < 100
  # too few steps for the tolerance: -1 steps and the paragraph that says what to change
  _, steps = flow.sample(
    ideal_velocity(0.0), jnp.asarray(X0, jnp.float32), sampler="dopri5", rtol=1e-9, atol=1e-9, max_steps=2
  )
  assert int(steps) == -1
  assert "--config.model.flow_max_steps" in flow.out_of_steps(2, 1e-9, 1e-9, "Sampling")


def test_heun_on_the_edm_time_grid_converges_to_the_exact_map(n=8):
  """The EDM grid's steps are its noise levels, from t0 = 1/81 (the noise stands for x there) to 1:
  n steps accepted, and Heun's error against the exact map from t0 shrinks about 4x when the
  grid doubles. With sigma_min = 0 the flow maps x_0 to
  x_t = t mu + C_t^(1/2) x_0, so from x at t0: x_1 = mu + S^(1/2) C_t0^(-1/2) (x - t0 mu)."""
  t0 = flow.edm_time_grid(n)[0]
  w, q = np.linalg.eigh((1 - t0) ** 2 * np.eye(D) + t0**2 * COV)
  exact = exact_map((X0 - t0 * MU) @ (q @ np.diag(w**-0.5) @ q.T), 0.0)
  errors_, steps = [], []
  for m in (n, 2 * n, 4 * n):
    x1, s = jax.jit(lambda x, m=m: flow.sample(ideal_velocity(0.0), x, sampler="heun", num_steps=m, time_grid="edm"))(
      jnp.asarray(X0, jnp.float32)
    )
    errors_.append(np.abs(np.asarray(x1, np.float64) - exact).max())
    steps.append(int(s))
  assert steps == [n, 2 * n, 4 * n] and flow.edm_time_grid(m)[0] == t0
  # about 4x per doubling (measured 0.071, 0.018, 0.0045): second order on this grid too
  assert errors_[0] > 3 * errors_[1] and errors_[1] > 3 * errors_[2] and errors_[2] < 1e-2, errors_


def gaussian_logpdf(x, sigma_min):
  cov = COV + sigma_min**2 * np.eye(D)
  d = x - MU
  _, logdet = np.linalg.slogdet(cov)
  return -0.5 * (np.einsum("bi,ij,bj->b", d, np.linalg.inv(cov), d) + logdet + D * math.log(2 * math.pi))


@pytest.mark.parametrize("sigma_min", [0.0, 0.1])
def test_ode_log_likelihood_is_the_gaussian_log_density(sigma_min):
  x = exact_map(RNG.normal(size=(8, D)) * 1.5, sigma_min)  # typical points and some in the tails
  log_p, _ = jax.jit(
    lambda x: flow.log_likelihood(ideal_velocity(sigma_min), x, divergence="exact", rtol=1e-7, atol=1e-7)
  )(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(log_p, np.float64), gaussian_logpdf(x, sigma_min), atol=1e-3)


def test_exact_divergence_is_the_jacobian_trace():
  t = 0.37
  a = 1.0 - t
  J = (t * COV - a * np.eye(D)) @ np.linalg.inv(a**2 * np.eye(D) + t**2 * COV)
  div = flow.exact_divergence(ideal_velocity(0.0), jnp.asarray(X0[:4], jnp.float32), jnp.full((4,), t))
  np.testing.assert_allclose(np.asarray(div), np.full(4, np.trace(J)), rtol=1e-5)


def mlp_velocity(key, dim, width=32):
  """A nonlinear velocity field with a dense, asymmetric Jacobian."""
  k1, k2 = jax.random.split(key)
  w1 = jax.random.normal(k1, (dim + 1, width)) / math.sqrt(dim)
  w2 = jax.random.normal(k2, (width, dim)) / math.sqrt(width)
  return lambda x, t_B: jnp.tanh(jnp.concatenate([x, t_B[:, None]], axis=1) @ w1) @ w2


def test_hutchinson_is_unbiased():
  dim, K = 6, 4000
  velocity = mlp_velocity(jax.random.PRNGKey(1), dim)
  x = jax.random.normal(jax.random.PRNGKey(2), (1, dim))
  t_B = jnp.full((1,), 0.6)
  exact = float(flow.exact_divergence(velocity, x, t_B)[0])
  probes = flow.rademacher_probes(jax.random.PRNGKey(3), K, x.shape)
  # one estimate per probe: K independent draws of eps^T J eps
  per_probe = jax.vmap(lambda p: flow.hutchinson_divergence(velocity, x, t_B, p[None])[1][0])(probes)
  per_probe = np.asarray(per_probe, np.float64)
  se = per_probe.std(ddof=1) / math.sqrt(K)
  assert se > 0  # the estimator has variance here, so the check below is not vacuous
  assert abs(per_probe.mean() - exact) < 3 * se
  # the K-probe mean that the solver uses is the same mean
  _, mean_k = flow.hutchinson_divergence(velocity, x, t_B, probes)
  np.testing.assert_allclose(float(mean_k[0]), per_probe.mean(), rtol=1e-4, atol=1e-5)


def test_hutchinson_log_likelihood_is_unbiased_along_the_ode():
  """The state x(t) does not depend on the probes, so the integral of the estimates is unbiased:
  the mean over independent one-probe solves lies within 3 standard errors of the exact answer."""
  M = 256
  x = np.repeat(exact_map(RNG.normal(size=(1, D)), 0.0), M, axis=0)
  probes = flow.rademacher_probes(jax.random.PRNGKey(4), 1, x.shape)  # a different probe per row
  log_p, _ = jax.jit(
    lambda x: flow.log_likelihood(ideal_velocity(0.0), x, divergence="hutchinson", probes=probes, rtol=1e-6, atol=1e-6)
  )(jnp.asarray(x, jnp.float32))
  log_p = np.asarray(log_p, np.float64)
  se = log_p.std(ddof=1) / math.sqrt(M)
  assert se > 1e-3
  assert abs(log_p.mean() - gaussian_logpdf(x[:1], 0.0)[0]) < 3 * se


def test_loss_terms_match_numpy():
  x1 = RNG.normal(size=(5, 2, 2, 1)).astype(np.float32)
  noise = RNG.normal(size=x1.shape).astype(np.float32)
  t = RNG.uniform(size=5).astype(np.float32)
  w = 0.7
  velocity = lambda x, t_B: w * x + t_B[:, None, None, None]
  got = flow.loss_terms(velocity, jnp.asarray(x1), jnp.asarray(t), jnp.asarray(noise), sigma_min=0.01)
  tc = t[:, None, None, None]
  xt = (1 - 0.99 * tc) * noise + tc * x1
  want = ((w * xt + tc - (x1 - 0.99 * noise)) ** 2).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_training_times():
  keys = jax.random.split(jax.random.PRNGKey(0), 20000)
  uniform = np.asarray(jax.vmap(lambda k: flow.training_time(k, flow.FlowConfig()))(keys))
  assert uniform.min() >= 0 and uniform.max() < 1
  assert abs(uniform.mean() - 0.5) < 0.01 and abs(uniform.var() - 1 / 12) < 0.003
  cfg = flow.FlowConfig(time_sampling="logit_normal", logit_mean=0.5, logit_std=0.8)
  logit = np.asarray(jax.vmap(lambda k: jax.scipy.special.logit(flow.training_time(k, cfg)))(keys))
  assert abs(logit.mean() - 0.5) < 0.02 and abs(logit.std() - 0.8) < 0.02


def test_a_uniform_density_is_eight_bits_per_dim():
  """A density uniform on [-1, 1]^D gives each bin of width 2/255 the mass 1/255 per dimension:
  log2(255) bits/dim."""
  D_ = 784
  bpd = flow.dequantized_bits_per_dim(jnp.asarray([-D_ * math.log(2.0)]), D_)
  np.testing.assert_allclose(float(bpd[0]), math.log2(255.0), rtol=1e-6)


@pytest.mark.parametrize(
  "field,value,phrase",
  [
    ("sigma_min", 1.0, "[0, 1)"),
    ("sigma_min", -0.1, "[0, 1)"),
    ("time_sampling", "beta", "uniform, logit_normal"),
    ("logit_std", 0.0, "positive"),
    ("rtol", 0.0, "tolerance"),
    ("atol", -1e-5, "tolerance"),
    ("max_steps", 0, "at least 1"),
  ],
)
def test_bad_values_are_named(field, value, phrase):
  cfg = flow.FlowConfig(**{field: value})
  with pytest.raises(ValueError, match=field) as e:
    flow.check(cfg)
  assert phrase in str(e.value)


def test_unknown_sampler_and_divergence_are_refused():
  v = ideal_velocity(0.0)
  x = jnp.zeros((2, D))
  with pytest.raises(ValueError, match="euler, heun, dopri5"):
    flow.sample(v, x, sampler="rk4")
  with pytest.raises(ValueError, match="exact, hutchinson"):
    flow.log_likelihood(v, x, divergence="skilling")
  with pytest.raises(ValueError, match="needs probes"):
    flow.log_likelihood(v, x, divergence="hutchinson")
