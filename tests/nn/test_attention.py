"""Self-attention, rotary positions and the key/value cache (genjax.nn.attention)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn import attention


def numpy_causal_attention(q, k, v):
  """Reference multi-head causal attention in float64: q, k, v [B,L,N,H] -> [B,L,N,H]."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  L, H = q.shape[1], q.shape[-1]
  scores = np.einsum("blnh,bsnh->bnls", q, k) / np.sqrt(H)
  scores = np.where(np.tril(np.ones((L, L), bool))[None, None], scores, -np.inf)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return np.einsum("bnls,bsnh->blnh", weights, v)


def test_module_matches_numpy_causal_attention():
  module = attention.SelfAttention(num_heads=2, use_bias=True)
  x = jax.random.normal(jax.random.key(0), (2, 5, 8))
  variables = module.init(jax.random.key(1), x, jnp.arange(5))
  y, cache = module.apply(variables, x, jnp.arange(5))
  assert cache is None
  p = variables["params"]
  qkv = np.einsum("bld,dtnh->bltnh", x, p["qkv"]["kernel"]) + np.asarray(p["qkv"]["bias"])
  o = numpy_causal_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
  expected = np.einsum("blnh,nhd->bld", o, p["out"]["kernel"]) + np.asarray(p["out"]["bias"])
  np.testing.assert_allclose(np.asarray(y), expected, atol=1e-5)


def test_rotary_scores_depend_only_on_relative_position():
  q = jax.random.normal(jax.random.key(0), (1, 1, 1, 16))
  k = jax.random.normal(jax.random.key(1), (1, 1, 1, 16))

  def score(pq, pk):
    rq = attention.rotary(q, jnp.array([pq]))
    rk = attention.rotary(k, jnp.array([pk]))
    return float(jnp.sum(rq * rk))

  assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
  assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
  # A rotation keeps the norm.
  np.testing.assert_allclose(jnp.linalg.norm(attention.rotary(q, jnp.array([7]))), jnp.linalg.norm(q), rtol=1e-5)


@pytest.mark.parametrize("rotary,num_kv_heads,qk_norm", [(False, None, False), (True, None, False), (True, 1, True)])
def test_cache_prefill_then_decode_matches_full_pass(rotary, num_kv_heads, qk_norm):
  module = attention.SelfAttention(num_heads=2, rotary=rotary, num_kv_heads=num_kv_heads, qk_norm=qk_norm)
  L, P = 7, 3
  x = jax.random.normal(jax.random.key(0), (2, L, 8))
  variables = module.init(jax.random.key(1), x, jnp.arange(L))
  full, _ = module.apply(variables, x, jnp.arange(L))
  cache = attention.init_cache(2, L, num_kv_heads or 2, 4)
  first, cache = module.apply(variables, x[:, :P], jnp.arange(P), cache)
  outs = [first]
  for t in range(P, L):
    y, cache = module.apply(variables, x[:, t : t + 1], jnp.array([t]), cache)
    outs.append(y)
  assert int(cache["index"]) == L
  np.testing.assert_allclose(np.concatenate(outs, 1), full, atol=1e-5)


def test_implementation_choice_and_errors():
  assert attention.pick_implementation("auto", jnp.float32, 64) == "xla"
  assert attention.pick_implementation("xla", jnp.bfloat16, 64) == "xla"
  with pytest.raises(ValueError, match="unknown"):
    attention.pick_implementation("flash", jnp.float32, 64)
  if jax.default_backend() != "gpu":
    with pytest.raises(ValueError, match="needs a GPU"):
      attention.pick_implementation("cudnn", jnp.bfloat16, 64)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_softmax_attention_matches_jax_and_numpy(dtype):
  """The einsum path equals jax.nn.dot_product_attention's XLA path (values and gradients) and a
  float64 numpy reference, causal and with an arbitrary mask; bfloat16 inputs keep a float32
  softmax."""
  r = np.random.default_rng(3)
  q, k, v = (jnp.asarray(r.standard_normal((2, 7, 3, 8)), dtype) for _ in range(3))
  mask = attention.causal_mask(7)
  ours = attention.softmax_attention(q, k, v, mask)
  theirs = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
  tol = 1e-6 if dtype == jnp.float32 else 2e-2
  assert ours.dtype == dtype
  np.testing.assert_allclose(np.float32(ours), np.float32(theirs), atol=tol)
  np.testing.assert_allclose(np.float32(ours), numpy_causal_attention(q, k, v), atol=tol)
  if dtype == jnp.float32:
    w = jnp.cos(jnp.arange(8.0))
    g_ours = jax.grad(lambda *a: jnp.sum(attention.softmax_attention(*a, mask) * w), argnums=(0, 1, 2))(q, k, v)
    g_jax = jax.grad(
      lambda *a: jnp.sum(jax.nn.dot_product_attention(*a, is_causal=True, implementation="xla") * w),
      argnums=(0, 1, 2),
    )(q, k, v)
    for a, b in zip(g_ours, g_jax):
      np.testing.assert_allclose(a, b, atol=1e-5)
  # An arbitrary mask (each query keeps at least one key): the masked keys get no weight.
  free = jnp.asarray(r.random((7, 7)) < 0.5).at[:, 0].set(True)
  ours = attention.softmax_attention(q, k, v, free)
  theirs = jax.nn.dot_product_attention(q, k, v, mask=free[None, None], implementation="xla")
  np.testing.assert_allclose(np.float32(ours), np.float32(theirs), atol=tol)
  no_mask = attention.softmax_attention(q, k, v)
  np.testing.assert_allclose(
    np.float32(no_mask), np.float32(jax.nn.dot_product_attention(q, k, v, implementation="xla")), atol=tol
  )


@pytest.mark.parametrize("num_kv_heads", [2, 1])
def test_grouped_query_attention_matches_jax_and_repeated_heads(num_kv_heads):
  """4 query heads over 2 (grouped-query) or 1 (multi-query) key/value heads: query head n uses
  key/value head n // (4 / K), as jax.nn.dot_product_attention groups them and as multi-head
  attention over keys and values repeated per group computes."""
  r = np.random.default_rng(4)
  q = jnp.asarray(r.standard_normal((2, 6, 4, 8)), jnp.float32)
  k, v = (jnp.asarray(r.standard_normal((2, 6, num_kv_heads, 8)), jnp.float32) for _ in range(2))
  mask = attention.causal_mask(6)
  ours = attention.softmax_attention(q, k, v, mask)
  theirs = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
  np.testing.assert_allclose(ours, theirs, atol=1e-6)
  repeat = lambda a: jnp.repeat(a, 4 // num_kv_heads, axis=2)
  np.testing.assert_allclose(ours, attention.softmax_attention(q, repeat(k), repeat(v), mask), atol=1e-6)
  np.testing.assert_allclose(ours, numpy_causal_attention(q, repeat(k), repeat(v)), atol=1e-5)


def test_rotary_base_sets_the_frequencies():
  """Channel pair (i, i + H/2) turns by position * base^(-2i/H): Llama 3's base 500000 against
  numpy, and a different rotation from the default 10000."""
  x = jax.random.normal(jax.random.key(2), (1, 3, 1, 8))
  positions = jnp.array([0, 5, 100])
  ours = np.asarray(attention.rotary(x, positions, base=500000.0))
  angle = np.asarray(positions, np.float64)[:, None] * 500000.0 ** (-np.arange(4) / 4)
  x1, x2 = np.asarray(x[0, :, 0, :4], np.float64), np.asarray(x[0, :, 0, 4:], np.float64)
  expected = np.concatenate([x1 * np.cos(angle) - x2 * np.sin(angle), x2 * np.cos(angle) + x1 * np.sin(angle)], -1)
  np.testing.assert_allclose(ours[0, :, 0], expected, atol=1e-4)
  assert np.abs(ours - np.asarray(attention.rotary(x, positions))).max() > 0.1
