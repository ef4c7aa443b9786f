"""Optimizers from the Optim config (genjax.core.optim): Muon for the matrices a family names,
AdamW for the rest, replayed in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import config as C
from genjax.config import ConfigError
from genjax.core import optim as optim_lib
from genjax.families.autoregressive import gpt

# optax.contrib's quintic Newton-Schulz coefficients (its _DEFAULT_NS_COEFFS, Keller Jordan's).
NS_COEFFS = (3.4445, -4.7750, 2.0315)
MUON = C.Optim(name="muon", learning_rate=1e-2, muon_learning_rate=0.1, muon_momentum=0.9, b1=0.9, b2=0.99)


def newton_schulz(m, steps=5):
  """Muon's orthogonalisation in float64: the matrix over its Frobenius norm, then `steps` of
  X <- a X + (b A + c A^2) X with A = X X^T, on the wide orientation."""
  x = np.asarray(m, np.float64)
  wide = x.shape[0] <= x.shape[1]
  x = x if wide else x.T
  x = x / (np.linalg.norm(x) + 1e-8)
  a, b, c = NS_COEFFS
  for _ in range(steps):
    gram = x @ x.T
    x = a * x + (b * gram + c * gram @ gram) @ x
  return x if wide else x.T


def nesterov_momenta(grads, beta):
  """optax's scale_by_muon momentum, step by step: the bias-corrected Nesterov blend."""
  mu, out = np.zeros_like(grads[0], np.float64), []
  for t, g in enumerate(grads, start=1):
    mu = beta * mu + (1 - beta) * g
    out.append(beta * mu / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t))
  return out


def two_steps(params, grads, matrix_axes, optim=MUON):
  tx = optim_lib.make_optimizer(optim, 100, matrix_axes=matrix_axes)
  state = tx.init(params)
  updates = []
  for g in grads:
    u, state = tx.update(g, state, params)
    params = optax.apply_updates(params, u)
    updates.append(u)
  return updates


def test_two_muon_steps_on_a_matrix_are_newton_schulz_of_the_nesterov_momentum():
  r = np.random.default_rng(0)
  params = {"w": jnp.asarray(r.standard_normal((12, 40)), jnp.float32), "b": jnp.zeros((40,))}
  grads = [jax.tree.map(lambda p: jnp.asarray(r.standard_normal(p.shape), jnp.float32), params) for _ in range(2)]
  # The first gradient's singular values spread over a factor of 30 (1 down to 1/30).
  u, _, vt = np.linalg.svd(r.standard_normal((12, 40)), full_matrices=False)
  grads[0]["w"] = jnp.asarray(u @ np.diag(np.logspace(0, -np.log10(30), 12)) @ vt, jnp.float32)
  axes = lambda path, shape: ((0,), (1,)) if len(shape) == 2 else None
  updates = two_steps(params, grads, axes)
  momenta = nesterov_momenta([np.asarray(g["w"]) for g in grads], MUON.muon_momentum)
  scale = -MUON.muon_learning_rate * np.sqrt(40 / 12)  # sqrt(fan_out / fan_in), then -lr
  for step, m in zip(updates, momenta):
    np.testing.assert_allclose(np.asarray(step["w"]), scale * newton_schulz(m), atol=2e-5)
    # Orthogonalised: every singular value near 1 (Newton-Schulz with these coefficients leaves
    # them in about [0.7, 1.2]), whatever the momentum's own spread.
    s = np.linalg.svd(np.asarray(step["w"]) / scale, compute_uv=False)
    assert 0.6 < s.min() and s.max() < 1.3, s
  first = np.linalg.svd(momenta[0], compute_uv=False)
  assert first.max() / first.min() > 25
  # The vector takes AdamW: its first step is -lr * g / (|g| + eps) (bias-corrected), undecayed.
  np.testing.assert_allclose(np.asarray(updates[0]["b"]), -MUON.learning_rate * np.sign(grads[0]["b"]), rtol=1e-5)


def test_muon_orthogonalises_the_fused_qkv_kernel_as_three_matrices():
  """A GPT's qkv kernel f[D,3,N,H] is q, k and v apart, each a D x (N*H) matrix (modded-nanogpt's
  split of its fused QKV); the output kernel f[N,H,D] is one (N*H) x D matrix."""
  D, N, H = 8, 2, 12
  r = np.random.default_rng(1)
  params = {
    "block_0": {"attn": {"qkv": {"kernel": jnp.zeros((D, 3, N, H))}, "out": {"kernel": jnp.zeros((N, H, D))}}},
    "wte": jnp.zeros((5, D)),
  }
  grads = jax.tree.map(lambda p: jnp.asarray(r.standard_normal(p.shape), jnp.float32), params)
  (u,) = two_steps(params, [grads], gpt.matrix_axes)
  lr = MUON.muon_learning_rate
  qkv_g, qkv_u = np.asarray(grads["block_0"]["attn"]["qkv"]["kernel"]), u["block_0"]["attn"]["qkv"]["kernel"]
  for i in range(3):
    expected = -lr * np.sqrt(N * H / D) * newton_schulz(qkv_g[:, i].reshape(D, N * H))
    np.testing.assert_allclose(np.asarray(qkv_u[:, i]).reshape(D, N * H), expected, atol=2e-5)
  out_g = np.asarray(grads["block_0"]["attn"]["out"]["kernel"]).reshape(N * H, D)
  expected = -lr * newton_schulz(out_g)  # fan_out < fan_in: no scaling
  np.testing.assert_allclose(np.asarray(u["block_0"]["attn"]["out"]["kernel"]).reshape(N * H, D), expected, atol=2e-5)
  # Orthogonalising the whole kernel as one D x (3*N*H) matrix would give another update.
  whole = -lr * np.sqrt(3 * N * H / D) * newton_schulz(qkv_g.reshape(D, -1))
  assert np.abs(np.asarray(qkv_u).reshape(D, -1) - whole).max() > 1e-2


def test_muon_needs_a_family_that_names_its_matrices():
  with pytest.raises(ConfigError, match="names its hidden matrices"):
    optim_lib.make_optimizer(MUON, 10)
