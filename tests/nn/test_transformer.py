"""Transformer pieces (genjax.nn.transformer)."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from genjax.nn import transformer


def test_gelu_is_the_exact_erf_gelu():
  """genjax's GELU against math.erf in float64 and jax.nn.gelu(approximate=False), values and
  derivatives, over the range where activations live (and far into both tails)."""
  x = np.concatenate([np.linspace(-12, 12, 2001), [-40.0, -1e-3, 0.0, 1e-3, 40.0]]).astype(np.float32)
  ours = np.asarray(transformer.gelu(jnp.asarray(x)), np.float64)
  exact = np.array([v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.astype(np.float64)])
  np.testing.assert_allclose(ours, exact, rtol=2e-6, atol=2e-6)
  np.testing.assert_allclose(ours, jax.nn.gelu(jnp.asarray(x), approximate=False), rtol=2e-6, atol=2e-6)
  # d/dx GELU = Phi(x) + x phi(x)
  phi = np.exp(-0.5 * x.astype(np.float64) ** 2) / math.sqrt(2 * math.pi)
  cdf = np.array([0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.astype(np.float64)])
  grad = jax.vmap(jax.grad(transformer.gelu))(jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(grad, np.float64), cdf + x * phi, rtol=1e-5, atol=1e-5)
  # Its approximation of a tanh GELU would miss by ~5e-4 near |x| = 2: the test tells them apart.
  assert np.max(np.abs(np.asarray(jax.nn.gelu(jnp.asarray(x), approximate=True)) - exact)) > 1e-4
