"""Data parallelism, in one place: a step written for the global batch runs under `jax.jit` on a
("data",) mesh or under `jax.pmap`, and gives the same numbers either way.

Families write every function for the global batch and never name a device axis. Under jit,
XLA's partitioner inserts the cross-device reductions. Under pmap each device sees its share,
and `Parallelism.compile` traces the step inside `mapped_over(DATA_AXIS)`; while that trace runs,
the helpers below act on the whole global batch:

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
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

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


def _under_axis(fn: Callable, axis: str) -> Callable:
  @functools.wraps(fn)
  def mapped(*args):
    with mapped_over(axis):
      return fn(*args)

  return mapped


# ----------------------------------------------------------------------------------------------
# Placing states and batches, compiling steps
# ----------------------------------------------------------------------------------------------


class Parallelism:
  """Puts states and batches on devices and compiles step functions for `parallel.mode`.

  modes "jit" and "fsdp": one mesh over `num_devices` devices (every device of every process by
  default), ("data",) or, with model_parallel > 1, ("data", "model"); batches are sharded along
  the data axis; the state is replicated ("jit") or sharded over the data axis ("fsdp"), its
  tensor-parallel parameters over the model axis (genjax.core.sharding, from the family's
  partition rules).
  mode "pmap": this process's devices, one state copy each (a leading device axis).
  """

  def __init__(self, mode: str, num_devices: Optional[int] = None, model_parallel: int = 1, rules=()):
    from genjax.config import ConfigError  # the user's error type; config imports nothing of genjax

    self.mode, self.rules = mode, tuple(rules)
    self.state_sharding = None  # set by `abstract` for the state it describes
    n = num_devices or jax.device_count()
    if n > jax.device_count():
      raise ConfigError(
        f"config.parallel.num_devices = {n} but only {jax.device_count()} devices exist "
        f"({jax.devices()[0].platform}). Use at most {jax.device_count()}, or leave it unset for all."
      )
    if mode in ("jit", "fsdp") and n % model_parallel:
      raise ConfigError(
        f"config.parallel.model_parallel = {model_parallel} does not divide the {n} devices: use a "
        "divisor of the device count."
      )
    if mode in ("jit", "fsdp"):
      if n != jax.device_count() and jax.process_count() > 1:
        raise ConfigError("config.parallel.num_devices must cover every device in multi-host runs.")
      self.devices = jax.devices()[:n]
      if model_parallel > 1:
        self.mesh = jax.make_mesh(
          (n // model_parallel, model_parallel),
          (DATA_AXIS, sharding_lib.MODEL_AXIS),
          devices=self.devices,
          axis_types=(jax.sharding.AxisType.Auto,) * 2,
        )
      else:
        self.mesh = jax.make_mesh((n,), (DATA_AXIS,), devices=self.devices, axis_types=(jax.sharding.AxisType.Auto,))
      self.replicated = NamedSharding(self.mesh, P())
      self.sharded = NamedSharding(self.mesh, P(DATA_AXIS))
    else:
      local = num_devices or jax.local_device_count()
      if local > jax.local_device_count():
        raise ConfigError(
          f"config.parallel.num_devices = {local} but this process has {jax.local_device_count()} devices."
        )
      self.devices = jax.local_devices()[:local]
      self.replicated = jax.sharding.SingleDeviceSharding(self.devices[0])
    self.num_devices = n if mode == "jit" else len(self.devices) * jax.process_count()
    self.devices_here = [d for d in self.devices if d.process_index == jax.process_index()]

  @classmethod
  def of(cls, exp, rules=()) -> "Parallelism":
    p = exp.parallel
    return cls(p.mode, p.num_devices, p.model_parallel, rules)

  @property
  def on_mesh(self) -> bool:
    return self.mode in ("jit", "fsdp")

  # -- states: replicated or sharded (mesh modes), one copy per device (pmap)
  def abstract(self, abstract_state):
    """`abstract_state` with the shardings this mode gives the state (remembered for `compile`)."""
    if self.on_mesh:
      self.state_sharding = sharding_lib.state_shardings(
        abstract_state, self.mesh, self.rules, fsdp=self.mode == "fsdp"
      )
    else:
      self.state_sharding = jax.tree.map(lambda _: self.replicated, abstract_state)
    return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, self.state_sharding
    )

  def put_state(self, state):
    if self.on_mesh:
      return jax.device_put(state, self.state_sharding or self.replicated)
    # pmap: one copy per local device along a leading axis; pmap keeps it there afterwards.
    d = len(self.devices)
    return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (d,) + np.shape(x)), jax.device_get(state))

  def one_copy(self, state):
    """The state as a single copy (what is checkpointed). On a mesh it stays a global array that
    spans every process, so every process must take part in whatever uses it."""
    if self.on_mesh:
      return state
    return jax.tree.map(lambda x: x[0], state)

  def local_copy(self, state):
    """One whole copy on this process's first device, with no tie to other processes: what
    process 0 samples from alone (a jitted call on a global array would wait for processes that
    never come). Every process must call it: arrays sharded across processes (FSDP) are gathered
    with a collective."""
    from jax.experimental import multihost_utils

    def local(x):
      if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if x.sharding.is_fully_replicated:
          x = x.addressable_data(0)
        else:
          x = multihost_utils.process_allgather(x, tiled=True)
      return jax.device_put(x, self.devices_here[0])

    return jax.tree.map(local, self.one_copy(state))

  # -- batches: each process gives its share, the global batch is sharded over the data axis
  def put_batch(self, local_batch: Dict[str, np.ndarray], stacked: bool = False):
    if self.on_mesh:
      sharding = NamedSharding(self.mesh, P(None, DATA_AXIS)) if stacked else self.sharded
      return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
    d = len(self.devices)
    if stacked:  # [K, b, ...] -> [d, K, b/d, ...]
      return jax.tree.map(lambda x: np.swapaxes(x.reshape((x.shape[0], d, -1) + x.shape[2:]), 0, 1), local_batch)
    return jax.tree.map(lambda x: x.reshape((d, -1) + x.shape[1:]), local_batch)

  def compile(self, fn, returns_state: bool, stacked: bool = False):
    """Compiles `fn(state, batch, rng)`; the old state's buffers are donated when it returns one.
    stacked: the batch is [K, B, ...] (K steps' batches, as `put_batch(..., stacked=True)` lays
    them out), sharded along B. Under pmap, `fn` is traced inside `mapped_over(DATA_AXIS)`."""
    donate = (0,) if returns_state else ()
    if self.on_mesh:
      state = self.state_sharding if self.state_sharding is not None else self.replicated
      out = (state, self.replicated) if returns_state else self.replicated
      batch = NamedSharding(self.mesh, P(None, DATA_AXIS)) if stacked else self.sharded
      return jax.jit(fn, in_shardings=(state, batch, self.replicated), out_shardings=out, donate_argnums=donate)
    return jax.pmap(
      _under_axis(fn, DATA_AXIS), axis_name=DATA_AXIS, in_axes=(0, 0, None), devices=self.devices, donate_argnums=donate
    )

  def host_metrics(self, metrics):
    metrics = jax.device_get(metrics)
    return metrics if self.on_mesh else jax.tree.map(lambda x: x[0], metrics)  # pmap: device 0's copy
