"""The device axis, in one place: a step written for the global batch runs under `jax.jit` on a
("data",) mesh or under `jax.pmap`, and gives the same numbers either way.

Families write every function for the global batch and never name a device axis. Under jit,
XLA's partitioner inserts the cross-device reductions. Under pmap each device sees its share,
and `genjax.core.placement.Placement.compile` traces the step inside `mapped_over(DATA_AXIS)`;
while that trace runs, the helpers below act on the whole global batch:

  example_keys(rng, n)         one key per example from its index in the global batch
  mean_over_devices(tree)      the mean of per-device means (gradients, metrics)
  sum_over_devices(tree)       sums over the global batch (masked evaluation sums)
  global_draw(draw, shape)     a random draw for the global batch, this device's rows of it
  batch_stats_axis()           the axis BatchNorm averages its statistics over (genjax.nn.norm)

Outside a pmap trace they are the identity (or draw for the local batch), which is also right
under jit and on one device.
"""

import contextlib
import contextvars
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from genjax.core import sharding as sharding_lib

DATA_AXIS = sharding_lib.DATA_AXIS

_MAPPED_AXIS: contextvars.ContextVar = contextvars.ContextVar("genjax_mapped_axis", default=None)


@contextlib.contextmanager
def mapped_over(axis: Optional[str]):
  """While tracing a function mapped over `axis` (pmap or shard_map), the helpers of this module
  reduce and draw over that axis."""
  token = _MAPPED_AXIS.set(axis)
  try:
    yield
  finally:
    _MAPPED_AXIS.reset(token)


def mapped_axis() -> Optional[str]:
  """The device axis of the trace in progress (pmap mode), or None (jit mode, one device)."""
  return _MAPPED_AXIS.get()


def batch_stats_axis() -> Optional[str]:
  """What BatchNorm passes as `axis_name`, so its statistics span the global batch."""
  return _MAPPED_AXIS.get()


def mean_over_devices(tree):
  axis = _MAPPED_AXIS.get()
  return tree if axis is None else jax.lax.pmean(tree, axis)


def sum_over_devices(tree):
  axis = _MAPPED_AXIS.get()
  return tree if axis is None else jax.lax.psum(tree, axis)


def example_keys(rng: jax.Array, local_batch: int) -> jax.Array:
  """One PRNG key per example, a function of (rng, the example's index in the global batch) only,
  so random draws (noise, timesteps, latents, dropout masks) do not depend on how the batch is
  split over devices."""
  axis = _MAPPED_AXIS.get()
  offset = 0 if axis is None else jax.lax.axis_index(axis) * local_batch
  index = offset + jnp.arange(local_batch)
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(index)


def per_example(fn, keys: jax.Array):
  """Draws one sample of `fn(key)` per example key, stacked on a leading batch axis."""
  return jax.vmap(fn)(keys)


def global_draw(draw: Callable, local_shape) -> jax.Array:
  """`draw(shape)` for the global batch (leading axis), cut to this device's rows: a draw from
  one key gives every device its part of the same array that jit draws in one piece."""
  axis = _MAPPED_AXIS.get()
  if axis is None:
    return draw(tuple(local_shape))
  n = jax.lax.axis_size(axis)
  rows = local_shape[0]
  full = draw((n * rows,) + tuple(local_shape[1:]))
  start = jax.lax.axis_index(axis) * rows
  return jax.lax.dynamic_slice_in_dim(full, start, rows, axis=0)


def under_axis(fn: Callable, axis: str) -> Callable:
  """`fn` traced inside `mapped_over(axis)` (what pmap compiles)."""

  @functools.wraps(fn)
  def mapped(*args):
    with mapped_over(axis):
      return fn(*args)

  return mapped
