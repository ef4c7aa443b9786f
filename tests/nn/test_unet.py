"""DDPM's U-Net: the paper's parameter count, shapes, dtypes, where attention goes, conditioning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn.embeddings import sinusoidal_embedding
from genjax.nn.unet import UNet, count_params


def test_cifar10_config_has_the_papers_parameter_count():
  # Ho et al. 2020, Table/appendix B: 35.7M parameters for the CIFAR-10 model.
  n = count_params(
    UNet(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1), (32, 32, 3)
  )
  assert round(n / 1e6, 1) == 35.7, n


def small(**kw):
  return UNet(**{"ch": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (4,), "dropout": 0.1, **kw})


def init(model, *args):
  # Jitted: op-by-op Flax on a busy CPU is far slower than one compiled call.
  return jax.jit(lambda k, *a: model.init(k, *a))(jax.random.key(0), *args)["params"]


def apply(model, params, *args, train=False, dropout_key=None):
  fn = jax.jit(lambda p, k, *a: model.apply({"params": p}, *a, train=train, rngs={"dropout": k} if train else None))
  return fn(params, dropout_key if dropout_key is not None else jax.random.key(0), *args)


def randomize(params, key):
  """Zero-initialised output layers make a fresh U-Net output 0; perturb every weight to test more."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def test_shapes_zero_output_at_init_and_time_dependence():
  model = small()
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  t = jnp.array([3, 700])
  params = init(model, x, t)
  out = apply(model, params, x, t)
  assert out.shape == (2, 8, 8, 3) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, 0.0)  # every residual branch and the output start at zero
  params = randomize(params, jax.random.key(2))
  a = apply(model, params, x, jnp.array([3, 3]))
  b = apply(model, params, x, jnp.array([700, 700]))
  assert float(jnp.abs(a - b).max()) > 1e-3
  # Dropout is active only in training and draws from the "dropout" stream.
  d1 = apply(model, params, x, t, train=True, dropout_key=jax.random.key(3))
  d2 = apply(model, params, x, t, train=True, dropout_key=jax.random.key(4))
  assert float(jnp.abs(d1 - d2).max()) > 0


def test_attention_only_at_the_listed_resolutions():
  model = UNet(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(14,))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jnp.zeros((1,), jnp.int32)))
  names = set(shapes["params"])
  assert {"down_1_attn_0", "up_1_attn_0", "up_1_attn_1", "mid_attn"} <= names
  assert not any(n.startswith(("down_0_attn", "up_0_attn", "down_2_attn", "up_2_attn")) for n in names)
  with pytest.raises(ValueError, match="cannot be halved"):
    jax.eval_shape(
      lambda: UNet(ch=32, ch_mult=(1, 2, 2, 2)).init(
        jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jnp.zeros((1,), jnp.int32)
      )
    )


def test_bfloat16_compute_keeps_float32_params_and_output():
  model = small(dtype=jnp.bfloat16, num_classes=10)
  x, t, y = jnp.ones((2, 8, 8, 1)), jnp.array([1, 2]), jnp.array([0, 10])
  params = init(model, x, t, y)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  params = randomize(params, jax.random.key(1))
  out = apply(model, params, x, t, y)
  assert out.dtype == jnp.float32
  ref = apply(small(num_classes=10), params, x, t, y)
  assert float(jnp.abs(out - ref).max()) < 0.05 * float(jnp.abs(ref).max()) + 1e-2
  # The label changes the output; label 10 is the null label of classifier-free guidance.
  other = apply(small(num_classes=10), params, x, t, jnp.array([3, 3]))
  assert float(jnp.abs(other - ref).max()) > 1e-3


def test_sinusoidal_embedding():
  t = jnp.array([0, 1, 17, 999])
  emb = sinusoidal_embedding(t, 64)
  assert emb.shape == (4, 64)
  np.testing.assert_allclose(emb[:, :32] ** 2 + emb[:, 32:] ** 2, 1.0, atol=1e-5)  # sin/cos pairs
  np.testing.assert_allclose(emb[0], np.r_[np.zeros(32), np.ones(32)], atol=1e-7)
  np.testing.assert_allclose(emb[2, 0], np.sin(17.0), atol=1e-5)  # the first frequency is 1
  np.testing.assert_allclose(emb[2, 31], np.sin(17.0 / 10000), atol=1e-6)  # the last is 1 / max_period
