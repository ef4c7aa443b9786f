"""EDM's pure functions against answers known in closed form: for Gaussian data N(mu, S) the ideal
denoiser is D(x; sigma) = mu + S (S + sigma^2 I)^-1 (x - mu), so the probability-flow ODE and
every sampler's map are affine, and their output moments can be computed exactly (no sampling
noise) from the moments of the input N(mu, S + sigma_max^2 I)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.families.diffusion import edm, schedules

D = 3
RNG = np.random.default_rng(0)
_Q, _ = np.linalg.qr(RNG.normal(size=(D, D)))
EIGS = np.array([0.1, 0.3, 1.0])
MU = np.array([0.3, -0.2, 0.1])
COV = _Q @ np.diag(EIGS) @ _Q.T


def ideal_denoiser(x, sigma_B):
  """E[x0 | x0 + sigma n = x] for x0 ~ N(MU, COV), batched over rows, float32 like a network."""
  cov = jnp.asarray(COV, jnp.float32)
  eye = jnp.eye(D, dtype=jnp.float32)

  def one(xi, s):
    return jnp.asarray(MU, jnp.float32) + cov @ jnp.linalg.solve(cov + s**2 * eye, xi - MU)

  return jax.vmap(one)(x, sigma_B)


def affine_map(sampler, num_steps, **kw):
  """(A, b) with sampler(x_init) = A x_init + b, from D + 1 probe points (the map is affine)."""
  probes = np.concatenate([np.zeros((1, D)), np.eye(D) * 10.0])
  out = np.asarray(
    edm.sample(
      ideal_denoiser,
      jax.random.PRNGKey(0),
      probes.shape,
      sampler=sampler,
      num_steps=num_steps,
      x_init=jnp.asarray(probes, jnp.float32),
      **kw,
    ),
    np.float64,
  )
  b = out[0]
  return (out[1:] - b).T / 10.0, b


def moment_error(sampler, num_steps, sigma_min=0.002, sigma_max=80.0):
  """|mean - mean*| + |cov - cov*|_F of the sampler's output, where (mean*, cov*) is what the exact
  ODE from sigma_max to sigma_min followed by the sampler's last (Euler) step into 0 gives."""
  A, b = affine_map(sampler, num_steps, sigma_min=sigma_min, sigma_max=sigma_max)
  mean = A @ MU + b
  cov = A @ (COV + sigma_max**2 * np.eye(D)) @ A.T
  target_cov = _Q @ np.diag(EIGS**2 / (EIGS + sigma_min**2)) @ _Q.T  # D applied to N(mu, S + s_min^2 I)
  return np.abs(mean - MU).sum() + np.linalg.norm(cov - target_cov)


def test_heun_reproduces_gaussian_moments_and_is_second_order():
  errors = {n: moment_error("heun", n) for n in (16, 32, 64)}
  assert errors[64] < 0.01, errors
  # the data's own moments, to within the s_min^2 / lambda the final step leaves
  A, b = affine_map("heun", 64)
  np.testing.assert_allclose(A @ (COV + 80.0**2 * np.eye(D)) @ A.T, COV, atol=0.01)
  np.testing.assert_allclose(A @ MU + b, MU, atol=0.005)
  for n in (16, 32):
    assert 3.0 < errors[n] / errors[2 * n] < 5.5, errors  # about 4x per doubling: second order
  euler = {n: moment_error("euler", n) for n in (64, 128)}
  assert 1.6 < euler[64] / euler[128] < 2.6, euler  # first order: about 2x
  assert errors[64] < euler[128] / 4  # Heun at 127 evaluations beats Euler at 128 by far


def test_stochastic_sampler_keeps_the_data_distribution():
  """Algorithm 2 with ImageNet's churn (S_churn 40 in [0.05, 50]) and the ideal denoiser: the data's
  moments, to within the sampling error of 40,000 draws, once the steps are fine enough (its bias
  shrinks with the steps: about 9% of the largest variance at 32 steps, under 1% at 128)."""
  n = 40000
  draw = lambda steps, **kw: np.asarray(
    edm.sample(ideal_denoiser, jax.random.PRNGKey(1), (n, D), num_steps=steps, **kw), np.float64
  )
  churn = dict(sampler="edm_sde", s_churn=40.0, s_tmin=0.05, s_tmax=50.0)
  fine, coarse = draw(128, **churn), draw(32, **churn)
  np.testing.assert_allclose(fine.mean(0), MU, atol=5 * np.sqrt(EIGS.max() / n))
  np.testing.assert_allclose(np.cov(fine.T), COV, atol=0.03)
  bias = lambda x: np.abs(np.linalg.eigvalsh(np.cov(x.T)) - EIGS).max()
  assert bias(coarse) > 2 * bias(fine)
  assert np.abs(draw(128, sampler="heun") - fine).mean() > 0.01  # the churn did add noise


def test_evaluations_per_sample():
  calls = []

  def counting(x, sigma_B):
    jax.debug.callback(lambda: calls.append(1))
    return ideal_denoiser(x, sigma_B)

  for sampler, steps in (("heun", 5), ("euler", 5), ("edm_sde", 5)):
    calls.clear()
    jax.block_until_ready(edm.sample(counting, jax.random.PRNGKey(0), (2, D), sampler=sampler, num_steps=steps))
    assert len(calls) == edm.evaluations(sampler, steps) == (5 if sampler == "euler" else 9), sampler


def test_karras_sigmas_match_equation_5():
  s = edm.karras_sigmas(18)
  assert s[0] == pytest.approx(80.0) and s[17] == pytest.approx(0.002) and s[18] == 0.0
  i = 7
  assert s[i] == pytest.approx((80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7)
  assert np.all(np.diff(s) < 0)


@pytest.mark.parametrize("kind", ["edm", "vp", "ve"])
def test_preconditioning_and_weights_are_table_1(kind):
  """Table 1's formulas, written out again in numpy, at a few sigmas."""
  sig = np.array([0.002, 0.05, 0.5, 3.0, 80.0])
  c_skip, c_out, c_in, c_noise = (np.asarray(a, np.float64) for a in edm.preconditioning(kind, jnp.asarray(sig), 0.5))
  if kind == "edm":
    ref = (0.25 / (sig**2 + 0.25), sig * 0.5 / np.sqrt(sig**2 + 0.25), 1 / np.sqrt(sig**2 + 0.25), np.log(sig) / 4)
    weight = (sig**2 + 0.25) / (sig * 0.5) ** 2
  elif kind == "vp":
    t = (np.sqrt(0.1**2 + 2 * 19.9 * np.log(sig**2 + 1)) - 0.1) / 19.9
    ref = (np.ones_like(sig), -sig, 1 / np.sqrt(sig**2 + 1), 999 * t)
    weight = 1 / sig**2
    np.testing.assert_allclose(np.asarray(edm.vp_sigma(jnp.asarray(t))), sig, rtol=1e-4)
  else:
    ref = (np.ones_like(sig), sig, np.ones_like(sig), np.log(sig / 2))
    weight = 1 / sig**2
  for got, want in zip((c_skip, c_out, c_in, c_noise), ref):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(edm.loss_weight(kind, jnp.asarray(sig), 0.5)), weight, rtol=1e-5)


def test_edm_preconditioning_gives_the_network_unit_variance_inputs_and_targets():
  """EDM's c_in and c_out (eqs. 7-8): for data of std sigma_data, F's input c_in (x0 + sigma n) and
  its effective target (x0 - c_skip x) / c_out both have unit variance at every sigma."""
  key = jax.random.PRNGKey(3)
  x0 = 0.5 * jax.random.normal(key, (200000,))
  n = jax.random.normal(jax.random.fold_in(key, 1), (200000,))
  for s in (0.01, 0.3, 2.0, 50.0):
    c_skip, c_out, c_in, _ = edm.preconditioning("edm", jnp.float32(s), 0.5)
    x = x0 + s * n
    assert float(jnp.var(c_in * x)) == pytest.approx(1.0, abs=0.02)
    assert float(jnp.var((x0 - c_skip * x) / c_out)) == pytest.approx(1.0, abs=0.02)


def test_training_sigmas_follow_their_distributions():
  keys = jax.random.split(jax.random.PRNGKey(0), 40000)
  draw = lambda cfg: np.asarray(jax.vmap(lambda k: edm.training_sigma(k, cfg))(keys), np.float64)
  log_s = np.log(draw(edm.EDMConfig()))
  assert log_s.mean() == pytest.approx(-1.2, abs=0.03) and log_s.std() == pytest.approx(1.2, abs=0.03)
  log_ve = np.log(draw(edm.EDMConfig(preconditioning="ve")))
  assert log_ve.min() >= np.log(0.02) - 1e-5 and log_ve.max() <= np.log(100) + 1e-4
  assert log_ve.mean() == pytest.approx((np.log(0.02) + np.log(100)) / 2, abs=0.05)
  t = np.asarray(edm.vp_sigma_inv(jnp.asarray(draw(edm.EDMConfig(preconditioning="vp")))), np.float64)
  assert t.min() >= 1e-5 - 1e-6 and t.max() <= 1.0 + 1e-5 and t.mean() == pytest.approx(0.5, abs=0.01)


def test_weighted_loss_equals_a_numpy_computation():
  rng = np.random.default_rng(5)
  x0 = rng.uniform(-1, 1, (4, 2, 2, 1)).astype(np.float32)
  noise = rng.normal(size=x0.shape).astype(np.float32)
  sigma = np.array([0.01, 0.4, 2.0, 30.0], np.float32)
  W = 0.7  # a network F(x_in, c_noise) = W x_in + c_noise
  net = lambda x_in, c_noise_B: W * x_in + c_noise_B[:, None, None, None]
  cfg = edm.EDMConfig()
  got, mse = edm.weighted_loss(edm.denoiser_from_network(net, "edm"), x0, sigma, noise, cfg)
  s = sigma.astype(np.float64)[:, None, None, None]
  x = x0 + s * noise
  c_skip, c_out, c_in = 0.25 / (s**2 + 0.25), s * 0.5 / np.sqrt(s**2 + 0.25), 1 / np.sqrt(s**2 + 0.25)
  d = c_skip * x + c_out * (W * c_in * x + np.log(s) / 4)
  want = (s[:, 0, 0, 0] ** 2 + 0.25) / (s[:, 0, 0, 0] * 0.5) ** 2 * ((d - x0) ** 2).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(mse), ((d - x0) ** 2).mean(axis=(1, 2, 3)), rtol=1e-4)


def test_a_ddpm_epsilon_model_is_a_vp_denoiser():
  """The ideal DDPM epsilon model of Gaussian data, seen through denoiser_from_ddpm, is the ideal
  EDM denoiser at each of its T noise levels; Heun over it (sigmas rounded to those levels)
  draws the data's moments."""
  sched = schedules.make_schedule("linear", 1000)
  ab = np.asarray(sched.alphas_cumprod, np.float64)

  def ddpm_oracle(xt, t_B):
    a = jnp.sqrt(jnp.asarray(ab, jnp.float32)[t_B])[:, None]
    s = jnp.sqrt(1 - jnp.asarray(ab, jnp.float32)[t_B])[:, None]
    x0_hat = ideal_denoiser(xt / a, s[:, 0] / a[:, 0])
    return x0_hat, (xt - a * x0_hat) / s

  denoise = edm.denoiser_from_ddpm(ddpm_oracle, ab)
  levels = edm.ddpm_sigmas(ab)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(5, D)) * 3, jnp.float32)
  for t in (0, 10, 500, 999):
    sig = jnp.full((5,), levels[t], jnp.float32)
    np.testing.assert_allclose(np.asarray(denoise(x, sig)), np.asarray(ideal_denoiser(x, sig)), rtol=1e-4, atol=1e-5)
  rnd = edm.round_sigma_to(levels)
  assert float(rnd(jnp.float32(levels[123] * 1.001))) == pytest.approx(levels[123], rel=1e-6)
  lo, hi = float(levels[0]), float(levels[-1])
  probes = np.concatenate([np.zeros((1, D)), np.eye(D) * 10.0])
  out = np.asarray(
    edm.sample(
      denoise, jax.random.PRNGKey(0), probes.shape, num_steps=80, sigma_min=lo, sigma_max=hi, round_sigma=rnd,
      x_init=jnp.asarray(probes, jnp.float32),
    ),
    np.float64,
  )  # fmt: skip
  A, b = (out[1:] - out[0]).T / 10.0, out[0]
  np.testing.assert_allclose(A @ (COV + hi**2 * np.eye(D)) @ A.T, COV, atol=0.01)
  np.testing.assert_allclose(A @ MU + b, MU, atol=0.005)


@pytest.mark.parametrize(
  "field,value,phrase",
  [
    ("preconditioning", "rf", "preconditioning = 'rf'"),
    ("sigma_min", 100.0, "0 < sigma_min < sigma_max"),
    ("rho", 0.0, "rho = 0.0 must be positive"),
    ("s_churn", -1.0, "s_churn = -1.0"),
    ("p_std", 0.0, "p_std = 0.0"),
    ("s_tmax", 0.0, "0 <= s_tmin < s_tmax"),
  ],
)
def test_bad_values_are_named(field, value, phrase):
  import dataclasses

  with pytest.raises(ValueError, match="config.model") as e:
    edm.check(dataclasses.replace(edm.EDMConfig(), **{field: value}))
  assert phrase in str(e.value)
