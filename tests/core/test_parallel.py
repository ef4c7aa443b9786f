"""The parallel layer: a step written for the global batch gives the same numbers under jit, on
one device and under pmap, because the layer (not the family) handles the device axis."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.config import Parallel
from genjax.core import parallel
from genjax.core.placement import place
from genjax.nn.norm import BatchNorm, Dropout


def _pmapped(fn, n=4):
  par = place(Parallel(mode="pmap", num_devices=n))
  return par, par.compile(fn, returns_state=False)


def test_example_keys_and_draws_do_not_depend_on_the_split():
  rng = jax.random.key(7)
  x = jnp.arange(8.0)

  def draws(state, batch, rng):
    del state
    keys = parallel.example_keys(rng, batch.shape[0])
    noise = jax.vmap(lambda k: jax.random.normal(k, ()))(keys)
    mask = parallel.global_draw(lambda shape: jax.random.bernoulli(rng, 0.5, shape), (batch.shape[0], 3))
    return {"noise": noise, "mask": mask}

  whole = draws(None, x, rng)
  par, mapped = _pmapped(draws)
  split = mapped(par.put_state(jnp.zeros(())), par.put_batch(np.asarray(x)), rng)
  np.testing.assert_array_equal(np.asarray(split["noise"]).reshape(-1), whole["noise"])
  np.testing.assert_array_equal(np.asarray(split["mask"]).reshape(8, 3), whole["mask"])
  assert 0 < float(jnp.mean(whole["mask"])) < 1  # a real draw, not constant


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    h = BatchNorm(use_running_average=not train, momentum=0.5)(x)
    return Dropout(0.5, deterministic=not train)(h)


def test_batchnorm_statistics_and_dropout_masks_span_the_global_batch():
  net = _Net()
  x = jnp.asarray(np.random.default_rng(0).normal(2.0, 3.0, (8, 5)), jnp.float32)
  variables = net.init(jax.random.key(0), x, train=False)

  def forward(variables, batch, rng):
    y, updates = net.apply(variables, batch, train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
    return y, updates["batch_stats"]

  y, stats = forward(variables, x, jax.random.key(1))
  par = place(Parallel(mode="pmap", num_devices=4))
  mapped = par.compile(forward, returns_state=False)
  y4, stats4 = mapped(par.put_state(variables), par.put_batch(np.asarray(x)), jax.random.key(1))
  np.testing.assert_allclose(np.asarray(y4).reshape(8, 5), y, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-5), stats4, stats)
  # The statistics are the whole batch's: a per-device BatchNorm would not match this.
  np.testing.assert_allclose(stats["BatchNorm_0"]["mean"], 0.5 * np.asarray(x).mean(0), rtol=1e-5)
  assert 0 < float(jnp.mean(y == 0)) < 1


def test_reductions_are_the_identity_outside_a_mapped_trace():
  tree = {"a": jnp.ones(3)}
  assert parallel.mapped_axis() is None
  assert parallel.mean_over_devices(tree) is tree and parallel.sum_over_devices(tree) is tree
