"""Multi-head self-attention with rotary positions and a key/value cache for autoregressive
decoding.

Shapes: B batch, L query length, S key length (the cache's capacity when decoding), D width,
N heads, H = D // N per-head width.

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

Cache = dict  # {"k": f[B,S,N,H], "v": f[B,S,N,H], "index": i32[] (next position to write)}


def softmax_attention(q_BxLxNxH, k_BxSxNxH, v_BxSxNxH, mask_LxS: Optional[jax.Array] = None):
  """softmax(q k^T / sqrt(H) where mask, else -inf) v per head: f[B,L,N,H] in q's dtype. The
  logits and the softmax are float32 whatever the inputs' dtype; `mask_LxS` (True: attend) is
  shared by every example and head."""
  H = q_BxLxNxH.shape[-1]
  logits_BxNxLxS = jnp.einsum("blnh,bsnh->bnls", q_BxLxNxH, k_BxSxNxH, preferred_element_type=jnp.float32)
  logits_BxNxLxS = logits_BxNxLxS * jnp.float32(1.0 / (H**0.5))
  if mask_LxS is not None:
    logits_BxNxLxS = jnp.where(mask_LxS, logits_BxNxLxS, jnp.finfo(jnp.float32).min)
  probs_BxNxLxS = jax.nn.softmax(logits_BxNxLxS, axis=-1).astype(v_BxSxNxH.dtype)
  return jnp.einsum("bnls,bsnh->blnh", probs_BxNxLxS, v_BxSxNxH).astype(q_BxLxNxH.dtype)


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


def init_cache(batch: int, capacity: int, num_heads: int, head_dim: int, dtype=jnp.float32) -> Cache:
  """An empty key/value cache for one attention layer holding `capacity` positions."""
  zeros = jnp.zeros((batch, capacity, num_heads, head_dim), dtype)
  return {"k": zeros, "v": zeros, "index": jnp.zeros((), jnp.int32)}


class SelfAttention(nn.Module):
  """Multi-head self-attention: x f[B,L,D] -> (y f[B,L,D], cache or None).

  With `cache=None` it attends over the L positions given (causally when `causal`). With a
  cache (causal only), the L new keys/values are written at cache["index"] and the queries
  attend to every cached position up to their own, so a prompt can be prefilled in one call
  and then decoded one token at a time; each decoding step costs the same whatever the index.
  """

  num_heads: int
  causal: bool = True
  use_bias: bool = True
  rotary: bool = False
  dtype: Any = jnp.float32
  implementation: Optional[str] = "auto"
  init_std: float = 0.02
  out_init_std: float = 0.02  # GPT-2 scales the residual projections by 1/sqrt(2 * layers)

  @nn.compact
  def __call__(self, x_BxLxD, positions_L, cache: Optional[Cache] = None):
    B, L, D = x_BxLxD.shape
    N = self.num_heads
    if D % N:
      raise errors.ConfigError(f"width {D} is not divisible by num_heads {N}.")
    H = D // N
    qkv_BxLx3xNxH = nn.DenseGeneral(
      (3, N, H), use_bias=self.use_bias, dtype=self.dtype, kernel_init=nn.initializers.normal(self.init_std), name="qkv"
    )(x_BxLxD)
    q_BxLxNxH, k_BxLxNxH, v_BxLxNxH = (qkv_BxLx3xNxH[:, :, i] for i in range(3))
    if self.rotary:
      q_BxLxNxH = rotary(q_BxLxNxH, positions_L)
      k_BxLxNxH = rotary(k_BxLxNxH, positions_L)

    if cache is None:
      if pick_implementation(self.implementation, self.dtype, H) == "cudnn":
        y_BxLxNxH = jax.nn.dot_product_attention(
          q_BxLxNxH, k_BxLxNxH, v_BxLxNxH, is_causal=self.causal, implementation="cudnn"
        )
      else:
        y_BxLxNxH = softmax_attention(q_BxLxNxH, k_BxLxNxH, v_BxLxNxH, causal_mask(L) if self.causal else None)
      new_cache = None
    else:
      if not self.causal:
        raise errors.ConfigError("a key/value cache only makes sense for causal attention.")
      index = cache["index"]
      k_BxSxNxH = jax.lax.dynamic_update_slice(cache["k"], k_BxLxNxH.astype(cache["k"].dtype), (0, index, 0, 0))
      v_BxSxNxH = jax.lax.dynamic_update_slice(cache["v"], v_BxLxNxH.astype(cache["v"].dtype), (0, index, 0, 0))
      S = k_BxSxNxH.shape[1]
      # Query i (at position index + i) sees cached positions 0 .. index + i; the rest of the
      # cache is empty or in its future. Attending over all S slots keeps each step's cost fixed.
      mask_LxS = jnp.arange(S)[None, :] <= index + jnp.arange(L)[:, None]
      y_BxLxNxH = softmax_attention(
        q_BxLxNxH, k_BxSxNxH.astype(q_BxLxNxH.dtype), v_BxSxNxH.astype(q_BxLxNxH.dtype), mask_LxS
      )
      new_cache = {"k": k_BxSxNxH, "v": v_BxSxNxH, "index": index + L}

    y_BxLxD = nn.DenseGeneral(
      D,
      axis=(-2, -1),
      use_bias=self.use_bias,
      dtype=self.dtype,
      kernel_init=nn.initializers.normal(self.out_init_std),
      name="out",
    )(y_BxLxNxH)
    return y_BxLxD, new_cache
