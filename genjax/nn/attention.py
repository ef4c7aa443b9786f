"""Multi-head self-attention with rotary positions and a key/value cache for autoregressive
decoding; grouped-query attention (Ainslie et al. 2023: fewer key/value heads than query heads,
as Llama 2 70B and Llama 3 use) and RMSNorm on each head's queries and keys (QK-norm: OLMo 2,
Qwen3, modded-nanogpt) as options.

Shapes: B batch, L query length, S key length (the cache's capacity when decoding), D width,
N query heads, K key/value heads (K divides N; K = N is multi-head attention, K = 1 multi-query
attention), G = N // K query heads per key/value head, H = D // N per-head width.

Two implementations of the attention itself (`pick_implementation`): on a GPU with half-precision
inputs, cuDNN's fused (flash) kernel through `jax.nn.dot_product_attention(implementation=
"cudnn")`; everywhere else `softmax_attention`, the same computation written as two einsums around
a float32 softmax. (jax.nn.dot_product_attention's own XLA path computes the same values, but
through a vmap over head groups whose gradient XLA:CPU runs as broadcast-and-reduce loops: 2.1 ms
against 1.0 ms for the forward and backward pass of one layer of the CPU shakespeare GPT.) The
fused kernel has no attention-probability dropout, so models built on this module apply dropout
to the residual branches only.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax import errors

Cache = dict  # {"k": f[B,S,K,H], "v": f[B,S,K,H], "index": i32[] (next position to write)}


def softmax_attention(q_BxLxNxH, k_BxSxKxH, v_BxSxKxH, mask_LxS: Optional[jax.Array] = None):
  """softmax(q k^T / sqrt(H) where mask, else -inf) v per head: f[B,L,N,H] in q's dtype. The
  logits and the softmax are float32 whatever the inputs' dtype; `mask_LxS` (True: attend) is
  shared by every example and head. With K < N key/value heads, query head n attends with
  key/value head n // G (the grouping of jax.nn.dot_product_attention and of Llama's repeat_kv),
  without copying the keys and values G times."""
  B, L, N, H = q_BxLxNxH.shape
  K = k_BxSxKxH.shape[2]
  if K == N:
    return _attend("blnh,bsnh->bnls", "bnls,bsnh->blnh", q_BxLxNxH, k_BxSxKxH, v_BxSxKxH, mask_LxS)
  q_BxLxKxGxH = q_BxLxNxH.reshape(B, L, K, N // K, H)
  y_BxLxKxGxH = _attend("blkgh,bskh->bkgls", "bkgls,bskh->blkgh", q_BxLxKxGxH, k_BxSxKxH, v_BxSxKxH, mask_LxS)
  return y_BxLxKxGxH.reshape(B, L, N, H)


def _attend(scores: str, mix: str, q, k, v, mask_LxS):
  """The two einsums of softmax_attention around a float32 softmax over the last axis (S)."""
  H = q.shape[-1]
  logits = jnp.einsum(scores, q, k, preferred_element_type=jnp.float32)
  logits = logits * jnp.float32(1.0 / (H**0.5))
  if mask_LxS is not None:
    logits = jnp.where(mask_LxS, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum(mix, probs, v).astype(q.dtype)


def causal_mask(L: int) -> jax.Array:
  """bool[L, L]: query i attends to keys 0..i."""
  return jnp.tril(jnp.ones((L, L), bool))


def pick_implementation(requested: Optional[str], dtype, head_dim: int) -> str:
  """ "xla" (softmax_attention) or "cudnn" (jax.nn.dot_product_attention's fused kernel).

  requested "auto" (or None) picks cuDNN flash attention where it applies (a GPU, float16 or
  bfloat16 inputs, a head width that is a multiple of 8 up to 128) and XLA otherwise.
  """
  if requested in ("xla", "cudnn"):
    if requested == "cudnn" and jax.default_backend() != "gpu":
      raise errors.ConfigError(
        f"attention implementation 'cudnn' needs a GPU, but the backend is "
        f"{jax.default_backend()!r}: use 'auto' or 'xla'."
      )
    return requested
  if requested not in (None, "auto"):
    raise errors.ConfigError(f"attention implementation {requested!r} is unknown: use 'auto', 'xla' or 'cudnn'.")
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  if jax.default_backend() == "gpu" and half and head_dim % 8 == 0 and head_dim <= 128:
    return "cudnn"
  return "xla"


def rotary(x_BxLxNxH: jax.Array, positions_L: jax.Array, base: float = 10000.0) -> jax.Array:
  """Rotary position embedding (Su et al. 2021, "RoFormer"): rotates each pair of channels
  (i, i + H/2) by the angle position * base^(-2i/H). Computed in float32, returned in x's dtype."""
  H = x_BxLxNxH.shape[-1]
  if H % 2:
    raise errors.ConfigError(f"rotary positions need an even head width, got {H}.")
  half = H // 2
  inv_freq_K = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle_LxK = positions_L.astype(jnp.float32)[:, None] * inv_freq_K[None, :]
  sin_1xLx1xK = jnp.sin(angle_LxK)[None, :, None, :]
  cos_1xLx1xK = jnp.cos(angle_LxK)[None, :, None, :]
  x = x_BxLxNxH.astype(jnp.float32)
  x1, x2 = x[..., :half], x[..., half:]
  out = jnp.concatenate([x1 * cos_1xLx1xK - x2 * sin_1xLx1xK, x2 * cos_1xLx1xK + x1 * sin_1xLx1xK], -1)
  return out.astype(x_BxLxNxH.dtype)


def init_cache(batch: int, capacity: int, num_kv_heads: int, head_dim: int, dtype=jnp.float32) -> Cache:
  """An empty key/value cache for one attention layer holding `capacity` positions of its
  num_kv_heads key/value heads (grouped-query attention caches K heads, not N)."""
  zeros = jnp.zeros((batch, capacity, num_kv_heads, head_dim), dtype)
  return {"k": zeros, "v": zeros, "index": jnp.zeros((), jnp.int32)}


def cached_attention(q_BxLxNxH, k_BxLxKxH, v_BxLxKxH, cache: Cache):
  """Writes the L new keys/values at cache["index"] and attends to every cached position up to
  each query's own: (y f[B,L,N,H], the updated cache)."""
  index, L = cache["index"], q_BxLxNxH.shape[1]
  k_BxSxKxH = jax.lax.dynamic_update_slice(cache["k"], k_BxLxKxH.astype(cache["k"].dtype), (0, index, 0, 0))
  v_BxSxKxH = jax.lax.dynamic_update_slice(cache["v"], v_BxLxKxH.astype(cache["v"].dtype), (0, index, 0, 0))
  S = k_BxSxKxH.shape[1]
  # Query i (at position index + i) sees cached positions 0 .. index + i; the rest of the
  # cache is empty or in its future. Attending over all S slots keeps each step's cost fixed.
  mask_LxS = jnp.arange(S)[None, :] <= index + jnp.arange(L)[:, None]
  y_BxLxNxH = softmax_attention(
    q_BxLxNxH, k_BxSxKxH.astype(q_BxLxNxH.dtype), v_BxSxKxH.astype(q_BxLxNxH.dtype), mask_LxS
  )
  return y_BxLxNxH, {"k": k_BxSxKxH, "v": v_BxSxKxH, "index": index + L}


class SelfAttention(nn.Module):
  """Multi-head self-attention: x f[B,L,D] -> (y f[B,L,D], cache or None).

  With `cache=None` it attends over the L positions given (causally when `causal`). With a
  cache (causal only), the L new keys/values are written at cache["index"] and the queries
  attend to every cached position up to their own, so a prompt can be prefilled in one call
  and then decoded one token at a time; each decoding step costs the same whatever the index.

  Parameters: "qkv" f[D,3,N,H] (one fused projection) when K = N; with grouped-query attention
  (num_kv_heads K < N) "q" f[D,N,H] and "kv" f[D,2,K,H]; "out" f[N,H,D]; with qk_norm the RMSNorm
  scales "q_norm" and "k_norm" f[H] (one per head width, shared by the heads, as Qwen3's).
  """

  num_heads: int
  causal: bool = True
  use_bias: bool = True
  rotary: bool = False
  dtype: Any = jnp.float32
  implementation: Optional[str] = "auto"
  init_std: float = 0.02
  out_init_std: float = 0.02  # GPT-2 scales the residual projections by 1/sqrt(2 * layers)
  num_kv_heads: Optional[int] = None  # None: num_heads (multi-head attention)
  qk_norm: bool = False
  rope_base: float = 10000.0  # the rotary base ("rope_theta": Llama 2 10000, Llama 3 500000)

  @nn.compact
  def __call__(self, x_BxLxD, positions_L, cache: Optional[Cache] = None):
    L, D = x_BxLxD.shape[1:]
    q_BxLxNxH, k_BxLxKxH, v_BxLxKxH = self.project(x_BxLxD)
    if self.qk_norm:  # before the rotation, as Qwen3 and OLMo 2 do
      q_BxLxNxH = nn.RMSNorm(dtype=self.dtype, name="q_norm")(q_BxLxNxH)
      k_BxLxKxH = nn.RMSNorm(dtype=self.dtype, name="k_norm")(k_BxLxKxH)
    if self.rotary:
      q_BxLxNxH = rotary(q_BxLxNxH, positions_L, self.rope_base)
      k_BxLxKxH = rotary(k_BxLxKxH, positions_L, self.rope_base)

    if cache is None:
      if pick_implementation(self.implementation, self.dtype, q_BxLxNxH.shape[-1]) == "cudnn":
        y_BxLxNxH = jax.nn.dot_product_attention(
          q_BxLxNxH, k_BxLxKxH, v_BxLxKxH, is_causal=self.causal, implementation="cudnn"
        )
      else:
        y_BxLxNxH = softmax_attention(q_BxLxNxH, k_BxLxKxH, v_BxLxKxH, causal_mask(L) if self.causal else None)
      new_cache = None
    else:
      if not self.causal:
        raise errors.ConfigError("a key/value cache only makes sense for causal attention.")
      y_BxLxNxH, new_cache = cached_attention(q_BxLxNxH, k_BxLxKxH, v_BxLxKxH, cache)

    y_BxLxD = nn.DenseGeneral(
      D,
      axis=(-2, -1),
      use_bias=self.use_bias,
      dtype=self.dtype,
      kernel_init=nn.initializers.normal(self.out_init_std),
      name="out",
    )(y_BxLxNxH)
    return y_BxLxD, new_cache

  def project(self, x_BxLxD):
    """(q f[B,L,N,H], k f[B,L,K,H], v f[B,L,K,H]): one fused projection when K = N, else the
    queries and the keys/values apart."""
    D, N = x_BxLxD.shape[-1], self.num_heads
    K = self.num_kv_heads or N
    if D % N:
      raise errors.ConfigError(f"width {D} is not divisible by num_heads {N}.")
    if N % K:
      raise errors.ConfigError(f"num_heads {N} is not a multiple of num_kv_heads {K}.")
    H = D // N
    dense = lambda shape, name: nn.DenseGeneral(
      shape, use_bias=self.use_bias, dtype=self.dtype, kernel_init=nn.initializers.normal(self.init_std), name=name
    )
    if K == N:
      qkv_BxLx3xNxH = dense((3, N, H), "qkv")(x_BxLxD)
      return tuple(qkv_BxLx3xNxH[:, :, i] for i in range(3))
    q_BxLxNxH = dense((N, H), "q")(x_BxLxD)
    kv_BxLx2xKxH = dense((2, K, H), "kv")(x_BxLxD)
    return q_BxLxNxH, kv_BxLx2xKxH[:, :, 0], kv_BxLx2xKxH[:, :, 1]
