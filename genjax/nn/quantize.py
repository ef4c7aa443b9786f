"""Vector quantisation (van den Oord, Vinyals and Kavukcuoglu 2017, "Neural Discrete Representation
Learning", arXiv:1711.00937), as pure functions over a codebook state.

  nearest(z, codebook)            the index of each vector's nearest code (squared distance)
  straight_through(z_e, z_q)      z_q forward, the identity's gradient backward (eq. 3's copy)
  ema_update(state, z_e, codes, decay, epsilon)
                                  the codebook learnt by exponential moving averages of the codes'
                                  assigned vectors (the paper's Appendix A.1, as Sonnet's
                                  VectorQuantizerEMA computes it, Laplace-smoothed cluster sizes)
  restart_dead_codes(state, z_e, rng, threshold)
                                  codes whose averaged use fell below `threshold` restarted at
                                  randomly chosen encoder outputs of the batch (Dhariwal et al.
                                  2020, Jukebox, section 3.2 "random restarts")
  usage(codes, num_codes)         the batch's codebook perplexity and the fraction of codes used

The state is a dict of arrays that a family keeps as a non-parameter collection:
{"codebook": f32[K,D], "cluster_size": f32[K], "embed_sum": f32[K,D]}. Under pmap every
statistic is a sum over the global batch (genjax.core.parallel), so the codebook evolves the same
whether the batch is split over devices or not.

Shapes: N vectors (every latent position of a batch, flattened), K codes, D code width.
"""

from typing import Dict

import jax
import jax.numpy as jnp

from genjax.core import parallel

State = Dict[str, jax.Array]


def init_state(rng: jax.Array, num_codes: int, dim: int) -> State:
  """A codebook of unit-variance Gaussian codes (Sonnet's VectorQuantizerEMA initialises its
  embeddings from a unit-variance distribution), its EMA statistics started at one use each."""
  codebook = jax.random.normal(rng, (num_codes, dim), jnp.float32)
  return {"codebook": codebook, "cluster_size": jnp.ones((num_codes,), jnp.float32), "embed_sum": codebook}


def nearest(z_NxD: jax.Array, codebook_KxD: jax.Array) -> jax.Array:
  """i32[N]: argmin_k ||z - e_k||^2, computed as ||e_k||^2 - 2 z.e_k (one matmul; ||z||^2 is
  the same for every k)."""
  z = z_NxD.astype(jnp.float32)
  scores = jnp.sum(jnp.square(codebook_KxD), axis=-1)[None, :] - 2.0 * z @ codebook_KxD.T
  return jnp.argmin(scores, axis=-1).astype(jnp.int32)


def straight_through(z_e: jax.Array, z_q: jax.Array) -> jax.Array:
  """z_q in the forward pass; in the backward pass the gradient reaches z_e unchanged (the
  paper's copy of the decoder's input gradient to the encoder's output)."""
  return z_e + jax.lax.stop_gradient(z_q - z_e)


def ema_update(state: State, z_NxD: jax.Array, codes_N: jax.Array, decay: float, epsilon: float = 1e-5) -> State:
  """One EMA step of the codebook (Appendix A.1): with n_k the number of vectors assigned to code
  k in the (global) batch and m_k their sum,

      N_k <- decay N_k + (1 - decay) n_k,   M_k <- decay M_k + (1 - decay) m_k,
      e_k  = M_k / N~_k,   N~_k = (N_k + epsilon) / (sum_j N_j + K epsilon) * sum_j N_j

  (Laplace smoothing keeps unused codes from a division by zero)."""
  z = jax.lax.stop_gradient(z_NxD.astype(jnp.float32))
  num_codes = state["codebook"].shape[0]
  one_hot = jax.nn.one_hot(codes_N, num_codes, dtype=jnp.float32)  # [N, K]
  counts, sums = parallel.sum_over_devices((jnp.sum(one_hot, axis=0), one_hot.T @ z))
  cluster_size = decay * state["cluster_size"] + (1.0 - decay) * counts
  embed_sum = decay * state["embed_sum"] + (1.0 - decay) * sums
  total = jnp.sum(cluster_size)
  smoothed = (cluster_size + epsilon) / (total + num_codes * epsilon) * total
  return {"codebook": embed_sum / smoothed[:, None], "cluster_size": cluster_size, "embed_sum": embed_sum}


def restart_dead_codes(state: State, z_NxD: jax.Array, rng: jax.Array, threshold: float) -> State:
  """Codes whose averaged cluster size is below `threshold` move to encoder outputs drawn
  uniformly from the global batch (the same draw on every device), with their statistics reset
  to one use of that vector; the others are left as they are. threshold 0 turns restarts off."""
  z = jax.lax.stop_gradient(z_NxD.astype(jnp.float32))
  axis = parallel.mapped_axis()
  if axis is not None:  # every device picks from the same global rows
    z = jax.lax.all_gather(z, axis, tiled=True)
  num_codes = state["codebook"].shape[0]
  picks = z[jax.random.randint(rng, (num_codes,), 0, z.shape[0])]
  dead = state["cluster_size"] < threshold
  return {
    "codebook": jnp.where(dead[:, None], picks, state["codebook"]),
    "cluster_size": jnp.where(dead, 1.0, state["cluster_size"]),
    "embed_sum": jnp.where(dead[:, None], picks, state["embed_sum"]),
  }


def usage(codes_N: jax.Array, num_codes: int) -> Dict[str, jax.Array]:
  """The batch's codebook perplexity exp(-sum_k p_k log p_k) (K when every code is used equally,
  1 when one code takes everything) and the fraction of the K codes used at least once, over the
  global batch."""
  counts = parallel.sum_over_devices(jnp.sum(jax.nn.one_hot(codes_N, num_codes, dtype=jnp.float32), axis=0))
  p = counts / jnp.maximum(jnp.sum(counts), 1.0)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return {"perplexity": jnp.exp(entropy), "codes_used": jnp.mean((counts > 0).astype(jnp.float32))}
