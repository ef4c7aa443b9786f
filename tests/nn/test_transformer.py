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


def test_mlp_kinds_are_their_formulas():
  """SwiGLU (Llama: silu(x W_gate) * (x W_up), then W_proj) and ReLU^2 (modded-nanogpt) against
  numpy on the module's own weights."""
  x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
  for kind in ("swiglu", "relu2"):
    module = transformer.MLP(kind=kind, hidden=12, use_bias=False)
    params = module.init(jax.random.key(0), x)["params"]
    w = {name: np.asarray(p["kernel"], np.float64) for name, p in params.items()}
    if kind == "swiglu":
      assert set(w) == {"gate", "up", "proj"}
      gate = x @ w["gate"]
      hidden = gate / (1 + np.exp(-gate)) * (x @ w["up"])
    else:
      assert set(w) == {"fc", "proj"}
      hidden = np.maximum(x @ w["fc"], 0) ** 2
    np.testing.assert_allclose(module.apply({"params": params}, x), hidden @ w["proj"], atol=1e-5)


def test_mlp_hidden_width_rule():
  # GELU / ReLU^2: mlp_ratio * width. SwiGLU: Llama's rule, which gives LLaMA 7B's 11008 for width
  # 4096 (2/3 * 16384 = 10922, up to a multiple of 256) and 512 for the CPU GPT's 128.
  assert transformer.mlp_hidden_size("gelu", 128) == 512 == transformer.mlp_hidden_size("relu2", 128)
  assert transformer.mlp_hidden_size("swiglu", 4096) == 11008
  assert transformer.mlp_hidden_size("swiglu", 128) == 512
  assert transformer.mlp_hidden_size("swiglu", 2048, hidden=8192) == 8192  # Llama 3.2 1B states its own


def test_rmsnorm_is_x_over_its_rms_times_a_scale():
  x = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32) * 3
  norm = transformer.make_norm("rmsnorm", use_bias=True, dtype=jnp.float32, name="n")
  params = {"scale": jnp.linspace(0.5, 1.5, 16)}
  expected = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, -1, keepdims=True) + 1e-5) * np.asarray(params["scale"])
  np.testing.assert_allclose(norm.apply({"params": params}, x), expected, rtol=1e-5)
  assert set(norm.init(jax.random.key(0), x)["params"]) == {"scale"}  # no bias, whatever use_bias
