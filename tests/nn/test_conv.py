"""genjax.nn.conv computes exactly what flax's Conv and ConvTranspose compute, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn import conv

# (height, width, C_in, C_out, kernel, stride, padding): the DCGAN, SNGAN and conv-VAE layers,
# odd sizes (7 -> 14 -> keep 13 in TF's convention is the caller's crop), kernels smaller than,
# equal to and larger than the stride, and non-square inputs.
CASES = [
  (2, 2, 8, 4, 5, 2, "SAME"),
  (4, 4, 8, 4, 5, 2, "SAME"),
  (7, 7, 3, 5, 5, 2, "SAME"),
  (7, 5, 3, 2, 4, 2, "SAME"),
  (6, 6, 3, 2, 3, 2, "VALID"),
  (5, 5, 3, 2, 4, 2, "VALID"),
  (6, 6, 2, 3, 3, 3, "SAME"),
  (5, 6, 2, 3, 1, 2, "SAME"),
  (5, 5, 2, 2, 2, 2, "SAME"),
  (3, 4, 2, 2, 3, 1, "SAME"),
]


def _rel_err(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(a)), 1e-30))


def _check_same_function(ref, mine, x):
  params = ref.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, mine.init(jax.random.key(0), x)) == jax.tree.map(jnp.shape, params)
  want, got = ref.apply(params, x), mine.apply(params, x)
  assert got.shape == want.shape
  assert _rel_err(want, got) < 1e-5
  loss = lambda module: lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))
  want_grads = jax.grad(loss(ref), argnums=(0, 1))(params, x)
  got_grads = jax.grad(loss(mine), argnums=(0, 1))(params, x)
  for w, g in zip(jax.tree.leaves(want_grads), jax.tree.leaves(got_grads)):
    assert _rel_err(w, g) < 1e-5


@pytest.mark.parametrize("h,w,cin,cout,k,s,padding", CASES)
def test_conv_transpose_equals_flax(h, w, cin, cout, k, s, padding):
  x = jnp.asarray(np.random.default_rng(h * 100 + k).normal(size=(3, h, w, cin)), jnp.float32)
  ref = nn.ConvTranspose(cout, (k, k), (s, s), padding)
  for impl in ("matmul", "xla"):
    _check_same_function(ref, conv.ConvTranspose(cout, (k, k), (s, s), padding, impl=impl), x)


@pytest.mark.parametrize("h,w,cin,cout,k,s,padding", CASES)
def test_strided_conv_equals_flax(h, w, cin, cout, k, s, padding):
  x = jnp.asarray(np.random.default_rng(h * 10 + k).normal(size=(2, h, w, cin)), jnp.float32)
  _check_same_function(
    nn.Conv(cout, (k, k), (s, s), padding), conv.Conv(cout, (k, k), (s, s), padding, impl="matmul"), x
  )


def test_unsupported_arguments_fall_back_to_lax():
  """Feature groups and kernel dilation are passed to lax unchanged, and give lax's answer."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 4)), jnp.float32)
  for kwargs in (dict(feature_group_count=2), dict(kernel_dilation=2)):
    _check_same_function(nn.Conv(6, (3, 3), **kwargs), conv.Conv(6, (3, 3), impl="matmul", **kwargs), x)


def test_matmul_path_has_the_true_flops():
  """The sub-pixel split never multiplies a dilated-in zero: XLA counts the same FLOPs as
  k*k*C_in*C_out multiply-adds per input pixel (plus nothing of note), not s*s times that."""
  x = jnp.ones((8, 8, 8, 32))
  mod = conv.ConvTranspose(32, (4, 4), (2, 2), "SAME", impl="matmul", use_bias=False)
  params = mod.init(jax.random.key(0), x)
  cost = jax.jit(mod.apply).lower(params, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  true_flops = 2 * 8 * 8 * 8 * 4 * 4 * 32 * 32
  assert true_flops <= cost["flops"] < 1.1 * true_flops


def test_auto_uses_xla_off_cpu_and_for_few_output_channels(monkeypatch):
  assert conv.Conv(16, (3, 3), impl="auto").conv_general_dilated is conv.conv_general_dilated
  assert conv.Conv(3, (3, 3), impl="auto").conv_general_dilated is None  # memory-bound: XLA's conv
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert conv.Conv(16, (3, 3), impl="auto").conv_general_dilated is None
  with pytest.raises(ValueError, match="'auto', 'matmul' or 'xla'"):
    conv.Conv(16, (3, 3), impl="fast")
