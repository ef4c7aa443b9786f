"""Generation loops: whole loops inside one jitted function (lax.scan / lax.fori_loop).

Token sampling follows the usual order: logits / temperature, then top-k, then top-p (nucleus,
Holtzman et al. 2020) on what top-k kept. The filters take traced values, so changing
temperature, k or p does not recompile.
"""

from typing import Callable

import jax
import jax.numpy as jnp


def filter_logits(logits_BxV: jax.Array, top_k, top_p) -> jax.Array:
  """Sets to -inf every logit outside the top-k and outside the top-p nucleus.

  top_k: int (0 or >= V turns it off); top_p: float in (0, 1] (1 turns it off). The nucleus is
  the smallest set of most likely tokens whose probability reaches top_p (the most likely token
  is always kept). Tokens tied with the last one kept are kept too.
  """
  V = logits_BxV.shape[-1]
  top_k = jnp.asarray(top_k, jnp.int32)
  k = jnp.where((top_k <= 0) | (top_k > V), V, top_k)
  sorted_BxV = -jnp.sort(-logits_BxV, axis=-1)  # descending
  in_top_k_V = jnp.arange(V) < k
  probs_BxV = jax.nn.softmax(jnp.where(in_top_k_V, sorted_BxV, -jnp.inf), axis=-1)
  mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
  keep_BxV = in_top_k_V & (mass_before_BxV < top_p)
  threshold_Bx1 = jnp.min(jnp.where(keep_BxV, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits_BxV >= threshold_Bx1, logits_BxV, -jnp.inf)


def sample_token(key: jax.Array, logits_BxV: jax.Array, temperature, top_k, top_p) -> jax.Array:
  """i32[B]: one token per row; temperature <= 0 means greedy (argmax)."""
  logits_BxV = logits_BxV.astype(jnp.float32)
  temperature = jnp.asarray(temperature, jnp.float32)
  scaled_BxV = filter_logits(logits_BxV / jnp.maximum(temperature, 1e-6), top_k, top_p)
  sampled_B = jax.random.categorical(key, scaled_BxV, axis=-1)
  return jnp.where(temperature > 0, sampled_B, jnp.argmax(logits_BxV, axis=-1)).astype(jnp.int32)


def generate_tokens(
  step_fn: Callable, cache, rng: jax.Array, prompt_BxP: jax.Array, length: int, temperature, top_k, top_p
) -> jax.Array:
  """i32[B, P + length]: the prompt followed by `length` sampled tokens.

  step_fn(tokens_BxL, positions_L, cache) -> (logits_BxLxV, cache) runs the model on L new
  tokens with a key/value cache of capacity >= P + length. The prompt is prefilled in one call;
  then a lax.scan feeds one token per step, so each new token costs one cached forward pass of
  fixed size, whatever the length generated so far.
  """
  B, P = prompt_BxP.shape
  logits_BxPxV, cache = step_fn(prompt_BxP, jnp.arange(P), cache)

  def step(carry, i):
    cache, logits_BxV = carry
    token_B = sample_token(jax.random.fold_in(rng, i), logits_BxV, temperature, top_k, top_p)
    logits_Bx1xV, cache = step_fn(token_B[:, None], (P + i)[None], cache)
    return (cache, logits_Bx1xV[:, 0]), token_B

  _, tokens_TxB = jax.lax.scan(step, (cache, logits_BxPxV[:, -1]), jnp.arange(length))
  return jnp.concatenate([prompt_BxP, tokens_TxB.T.astype(prompt_BxP.dtype)], axis=1)


def continue_in_window(
  logits_fn: Callable, rng: jax.Array, window_BxW: jax.Array, length: int, first: int, temperature, top_k, top_p
) -> jax.Array:
  """i32[B, length]: tokens drawn one at a time, each from the logits of the last W tokens (the
  context cropped to the block, as nanoGPT's `generate` does once a sequence outgrows it).

  logits_fn(tokens_BxW) -> logits_BxWxV is an uncached full pass; window_BxW holds the last W
  tokens so far. Token i draws with key fold_in(rng, first + i), so a sequence continued here
  from `generate_tokens` uses the keys it would have used had it kept going.
  """

  def step(window_BxW, i):
    logits_BxV = logits_fn(window_BxW)[:, -1]
    token_B = sample_token(jax.random.fold_in(rng, first + i), logits_BxV, temperature, top_k, top_p)
    return jnp.concatenate([window_BxW[:, 1:], token_B[:, None].astype(window_BxW.dtype)], axis=1), token_B

  _, tokens_TxB = jax.lax.scan(step, window_BxW, jnp.arange(length))
  return tokens_TxB.T.astype(window_BxW.dtype)


def generate_binary_image(logits_fn: Callable, rng: jax.Array, n: int, height: int, width: int) -> jax.Array:
  """f32[n, height, width, 1] in {0, 1}, drawn pixel by pixel in raster order.

  logits_fn(x f32[n,H,W,1] in {0,1}) -> logits f32[n,H,W,1] of p(x_ij = 1 | pixels before ij).
  One lax.fori_loop over the H*W positions; pixel i's logits are read from a full forward pass
  over the image so far (the masks make later, still-zero pixels irrelevant).
  """

  def body(i, x_BxHxWx1):
    row, col = i // width, i % width
    logits_B = logits_fn(x_BxHxWx1)[:, row, col, 0].astype(jnp.float32)
    bits_B = jax.random.bernoulli(jax.random.fold_in(rng, i), jax.nn.sigmoid(logits_B))
    return x_BxHxWx1.at[:, row, col, 0].set(bits_B.astype(x_BxHxWx1.dtype))

  return jax.lax.fori_loop(0, height * width, body, jnp.zeros((n, height, width, 1), jnp.float32))
