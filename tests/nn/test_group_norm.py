"""genjax.nn.norm.GroupNorm against a numpy GroupNorm and against flax.linen.GroupNorm, whose
parameters and results it must keep (the DDPM U-Net's checkpoints and numbers rest on it)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import errors
from genjax.nn.norm import GroupNorm


def numpy_group_norm(x, groups, scale, bias, eps):
  """Per example and group: (x - mean) / sqrt(var + eps) over the positions and the group's
  channels, in float64; then the per-channel affine transform."""
  x = np.asarray(x, np.float64)
  B, C = x.shape[0], x.shape[-1]
  g = x.reshape(B, -1, groups, C // groups)
  mean = g.mean(axis=(1, 3), keepdims=True)
  var = g.var(axis=(1, 3), keepdims=True)
  y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
  return y * scale + bias


@pytest.mark.parametrize(
  "shape, groups, fast",
  [((3, 6, 5, 32), 32, True), ((3, 6, 5, 64), 32, True), ((2, 4, 4, 128), 32, False), ((2, 7, 12), 4, False)],
)
def test_equals_numpy_and_flax_with_the_same_parameters(shape, groups, fast):
  x = jax.random.normal(jax.random.key(0), shape) * 3.0 + 1.5
  mine = GroupNorm(num_groups=groups, epsilon=1e-6, use_fast_variance=fast)
  theirs = nn.GroupNorm(num_groups=groups, epsilon=1e-6, use_fast_variance=fast)
  params = mine.init(jax.random.key(1), x)["params"]
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, theirs.init(jax.random.key(1), x)["params"])
  C = shape[-1]
  params = {"scale": 1.0 + 0.1 * jnp.arange(C, dtype=jnp.float32), "bias": 0.01 * jnp.arange(C, dtype=jnp.float32)}
  y = mine.apply({"params": params}, x)
  np.testing.assert_allclose(
    y, numpy_group_norm(x, groups, np.asarray(params["scale"]), np.asarray(params["bias"]), 1e-6), atol=2e-5
  )
  np.testing.assert_allclose(y, theirs.apply({"params": params}, x), atol=2e-5)
  # the same gradients, for the input and both parameters
  weight = jax.random.normal(jax.random.key(2), shape)
  grad = lambda module: jax.grad(lambda p, x: jnp.vdot(module.apply({"params": p}, x), weight), (0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(grad(mine)), jax.tree.leaves(grad(theirs))):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_a_channel_count_the_groups_do_not_divide_is_a_config_error():
  with pytest.raises(errors.ConfigError, match="48 channels do not split into 32 equal groups"):
    GroupNorm(num_groups=32).init(jax.random.key(0), jnp.ones((1, 2, 2, 48)))
