"""Elementwise likelihood terms (genjax.nn.losses)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.nn.losses import bernoulli_nll


def test_bernoulli_nll_values_and_gradient():
  """Against float64 numpy (-log sigmoid(l) for t=1, -log(1 - sigmoid(l)) for t=0, and the
  derivative sigmoid(l) - t), equal to optax's for binary targets element for element, finite
  and exact far into both tails."""
  logits = np.concatenate([np.linspace(-30, 30, 1201), [-200.0, -1e-6, 0.0, 1e-6, 200.0]]).astype(np.float32)
  l64 = logits.astype(np.float64)
  for t in (0.0, 1.0):
    targets = np.full_like(logits, t)
    ours = np.asarray(bernoulli_nll(jnp.asarray(logits), jnp.asarray(targets)))
    expected = np.logaddexp(0.0, -l64) if t == 1.0 else np.logaddexp(0.0, l64)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ours, np.asarray(optax.sigmoid_binary_cross_entropy(logits, targets)))
    grad = jax.vmap(jax.grad(bernoulli_nll), (0, 0))(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(np.asarray(grad), 1.0 / (1.0 + np.exp(-l64)) - t, atol=1e-6)
  # Soft targets in (0, 1): the cross-entropy of two Bernoullis, and its derivative in t.
  t = jnp.asarray([0.25, 0.5, 0.9], jnp.float32)
  soft_l = jnp.asarray([-1.0, 0.3, 2.0], jnp.float32)
  p = 1.0 / (1.0 + np.exp(-np.float64(soft_l)))
  np.testing.assert_allclose(
    bernoulli_nll(soft_l, t), -(np.float64(t) * np.log(p) + (1 - np.float64(t)) * np.log(1 - p)), rtol=1e-6
  )
  np.testing.assert_allclose(jax.grad(lambda t: bernoulli_nll(soft_l, t).sum())(t), -np.float64(soft_l), rtol=1e-6)
