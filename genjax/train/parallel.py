"""Data parallelism: one step function, run under `jax.jit` on a ("data",) mesh or `jax.pmap`.

A family writes its train step for the global batch. Under jit, XLA's partitioner inserts the
cross-device reductions; under pmap each device sees its share and the family averages
gradients, metrics and batch statistics with `mean_over_data(x, axis_name)`, which is the
identity when `axis_name` is None (jit mode, or one device).
"""

from typing import Optional

import jax
import jax.numpy as jnp

DATA_AXIS = "data"


def axis_name_for(mode: str) -> Optional[str]:
  """The collective axis name a family must use in this parallel mode."""
  return DATA_AXIS if mode == "pmap" else None


def mean_over_data(tree, axis_name: Optional[str]):
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def example_keys(rng: jax.Array, local_batch: int, axis_name: Optional[str]) -> jax.Array:
  """One PRNG key per example, a function of (rng, global example index) only, so that random
  draws (noise, timesteps, latents) are the same whether the batch is split over devices or not.
  """
  offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * local_batch
  index = offset + jnp.arange(local_batch)
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(index)


def per_example(fn, keys: jax.Array):
  """Draws one sample of `fn(key)` per example key, stacked on a leading batch axis."""
  return jax.vmap(fn)(keys)
