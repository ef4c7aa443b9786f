"""The VQ-VAE (genjax.families.vqvae) and its quantiser (genjax.nn.quantize) against numpy: the
nearest code, the straight-through gradient, the EMA codebook replayed step by step, dead-code
restarts, the usage figures, and the family's step (one device equal to eight, the codebook
statistics summed over the global batch)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import families
from genjax.config import ConfigError, Experiment, Optim, Parallel, Train
from genjax.core.placement import place
from genjax.data.info import DataInfo
from genjax.families import vae, vqvae
from genjax.nn import quantize

GREY_8x8 = DataInfo("t", "image", (8, 8, 1))


def test_the_quantiser_picks_the_nearest_code():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(300, 5)).astype(np.float32)
  codebook = rng.normal(size=(17, 5)).astype(np.float32)
  want = np.argmin(((z[:, None, :] - codebook[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_array_equal(np.asarray(quantize.nearest(jnp.asarray(z), jnp.asarray(codebook))), want)


def test_the_straight_through_gradient_is_the_identitys():
  rng = np.random.default_rng(1)
  z_e, z_q, g = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(3))
  np.testing.assert_allclose(quantize.straight_through(z_e, z_q), z_q, atol=1e-6)  # forward: the code
  # backward: d/dz_e sum(g * f(z_e)) is g, as for f the identity (whatever z_q is)
  grad = jax.grad(lambda z: jnp.sum(g * jnp.sin(quantize.straight_through(z, z_q))))(z_e)
  np.testing.assert_allclose(grad, g * np.cos(np.asarray(z_q)), rtol=1e-6)
  np.testing.assert_array_equal(jax.grad(lambda z: jnp.sum(g * quantize.straight_through(z, z_q)))(z_e), g)


def test_the_ema_codebook_is_a_numpy_replay():
  """Five EMA steps (decay 0.9, Laplace smoothing) equal the appendix's formulas in numpy."""
  rng = np.random.default_rng(2)
  k, d, decay, eps = 6, 3, 0.9, 1e-5
  state = quantize.init_state(jax.random.key(0), k, d)
  n_size, n_sum = np.ones(k), np.asarray(state["codebook"], np.float64).copy()
  for _ in range(5):
    z = rng.normal(size=(40, d)).astype(np.float32)
    codes = np.asarray(quantize.nearest(jnp.asarray(z), state["codebook"]))
    state = jax.jit(quantize.ema_update, static_argnums=(3, 4))(state, jnp.asarray(z), jnp.asarray(codes), decay, eps)
    one_hot = np.eye(k)[codes]
    n_size = decay * n_size + (1 - decay) * one_hot.sum(0)
    n_sum = decay * n_sum + (1 - decay) * one_hot.T @ z.astype(np.float64)
    smoothed = (n_size + eps) / (n_size.sum() + k * eps) * n_size.sum()
    np.testing.assert_allclose(state["cluster_size"], n_size, rtol=1e-5)
    np.testing.assert_allclose(state["embed_sum"], n_sum, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["codebook"], n_sum / smoothed[:, None], rtol=1e-5, atol=1e-6)


def test_dead_codes_restart_at_encoder_outputs_and_the_rest_stay():
  state = quantize.init_state(jax.random.key(0), 8, 2)
  state = {**state, "cluster_size": jnp.asarray([5.0, 0.1, 2.0, 0.0, 3.0, 0.5, 9.0, 1.0])}
  z = jnp.asarray(np.random.default_rng(3).normal(size=(20, 2)), jnp.float32)
  new = quantize.restart_dead_codes(state, z, jax.random.key(1), threshold=1.0)
  dead = np.array([0, 1, 0, 1, 0, 1, 0, 0], bool)
  np.testing.assert_array_equal(np.asarray(new["codebook"])[~dead], np.asarray(state["codebook"])[~dead])
  np.testing.assert_array_equal(np.asarray(new["cluster_size"]), np.where(dead, 1.0, state["cluster_size"]))
  rows = {tuple(r) for r in np.asarray(z)}
  assert all(tuple(r) in rows for r in np.asarray(new["codebook"])[dead])  # each a row of the batch
  # a restarted code counts one use of its vector; the others keep their statistics
  np.testing.assert_array_equal(np.asarray(new["embed_sum"])[dead], np.asarray(new["codebook"])[dead])
  np.testing.assert_array_equal(np.asarray(new["embed_sum"])[~dead], np.asarray(state["embed_sum"])[~dead])


def test_usage_is_the_perplexity_and_the_fraction_of_codes_used():
  codes = jnp.asarray([0, 0, 1, 3, 3, 3, 3, 2])
  p = np.array([2, 1, 1, 4, 0, 0]) / 8
  out = quantize.usage(codes, 6)
  np.testing.assert_allclose(out["perplexity"], np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))), rtol=1e-6)
  np.testing.assert_allclose(out["codes_used"], 4 / 6)
  np.testing.assert_allclose(quantize.usage(jnp.arange(6), 6)["perplexity"], 6.0, rtol=1e-6)


def tiny_exp(**model):
  cfg = {**dict(hidden=8, residual_hidden=4, residual_blocks=1, num_codes=16, code_dim=4, num_bins=17), **model}
  return Experiment(
    family="vae", model=vqvae.VQVAEConfig(**cfg), optim=Optim(learning_rate=2e-3), train=Train(steps=10, batch_size=16)
  )


def grey_batch(n, seed=0):
  """8x8 images of 3 prototypes on the 17-level grid, a little noise: something to learn."""
  proto = np.random.default_rng(7).integers(0, 17, size=(3, 8, 8, 1))
  rng = np.random.default_rng(seed)
  x = np.clip(proto[rng.integers(0, 3, n)] + rng.integers(-1, 2, size=(n, 8, 8, 1)), 0, 16)
  return {"image": (x / 8.0 - 1.0).astype(np.float32), "label": np.zeros(n, np.int32)}


def test_the_family_trains_the_codes_and_bounds_the_likelihood():
  exp = tiny_exp()
  assert vae.module_for(exp.model) is vqvae and families.module_of(exp) is vqvae
  fam = families.build(exp, GREY_8x8)
  state = fam.init(jax.random.key(0))
  assert state.extra["vq"]["codebook"].shape == (16, 4)
  step = jax.jit(fam.train_step)
  losses = []
  for i in range(60):
    state, metrics = step(state, grey_batch(16, seed=i), jax.random.key(i))
    losses.append(float(metrics["loss"]))
  assert set(metrics) >= {"loss", "recon_nats", "commitment", "perplexity", "codes_used"}
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1, losses
  assert 1.0 <= float(metrics["perplexity"]) <= 16.0
  # The uniform-prior bound: reconstruction + h w log K nats, and bits/dim from it.
  test = grey_batch(6, seed=99)
  out = fam.evaluate(state, [{"image": test["image"], "mask": np.ones(6, np.float32)}], None)
  np.testing.assert_allclose(out["prior_nats"], 2 * 2 * np.log(16), rtol=1e-6)
  np.testing.assert_allclose(out["nll_bound"], out["recon_nats"] + out["prior_nats"], rtol=1e-6)
  np.testing.assert_allclose(out["bits_per_dim_bound"], out["nll_bound"] / (64 * np.log(2)), rtol=1e-6)
  samples = jax.jit(fam.sample, static_argnums=2)(state.variables(), jax.random.key(1), 5)
  assert samples.shape == (5, 8, 8, 1) and float(jnp.min(samples)) >= -1.0 and float(jnp.max(samples)) <= 1.0


def test_bad_vq_settings_are_one_paragraph_before_compiling():
  with pytest.raises(ConfigError, match="at least 2 codes"):
    families.build(tiny_exp(num_codes=1), GREY_8x8)
  with pytest.raises(ConfigError, match="divisible by 4"):
    families.build(tiny_exp(), DataInfo("t", "image", (6, 6, 1)))


def test_pmap_step_equals_one_device_step():
  """The codebook's EMA sums its statistics over the global batch and restarts draw from the
  global batch: eight devices give the one-device step's parameters, codebook and metrics."""
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/conftest.py)")
  fam = families.build(tiny_exp(restart_threshold=1.0), GREY_8x8)
  state = fam.init(jax.random.key(0))
  batch = grey_batch(16, seed=1)
  step_one = jax.jit(fam.train_step)
  par = place(Parallel(mode="pmap", num_devices=8))
  step_many = par.compile(fam.train_step, returns_state=True)
  state_many = par.put_state(state)
  shards = par.put_batch(batch)
  for i in range(3):
    rng = jax.random.key(10 + i)
    state, m1 = step_one(state, batch, rng)
    state_many, m8 = step_many(state_many, shards, rng)
  for a, b in zip(jax.tree.leaves((state.params, state.extra)), jax.tree.leaves((state_many.params, state_many.extra))):
    np.testing.assert_allclose(np.asarray(b)[0], a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(b)[7], a, rtol=1e-4, atol=1e-5)
  for name in m1:
    np.testing.assert_allclose(np.asarray(m8[name])[0], m1[name], rtol=1e-4)
  restarted = np.asarray(state.extra["vq"]["cluster_size"]) == 1.0  # codes unused in the last step restart
  assert 0 < restarted.sum() < 16, state.extra["vq"]["cluster_size"]
