"""Placement: where a run's arrays live and how its steps are compiled, as one frozen value.

`place(parallel)` reads `config.Parallel` and the devices once and returns a `Placement`:

  mode            "jit" or "fsdp" (one mesh over every device of every process), or "pmap"
  mesh            the ("data",) or ("data", "model") mesh (mesh modes)
  num_devices     every device the step runs on, over all processes
  data_parallel   how many ways the global batch is split (the data axis; pmap: every device)
  batch_shards    how many distinct parts of the global batch the processes load, and
  batch_shard     which part this process loads: processes whose devices hold the same rows of
                  the data axis (a model axis that spans processes) load the same rows
  state_sharding  the state's shardings (from the family's partition rules, `for_state`)

Nothing mutates a Placement: `for_state` returns a new one. Everything that needs a device count
or a sharding (validation, the data shares, the compiled steps, the run summary, the benchmarks)
reads it from here.
"""

import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax.core import sharding as sharding_lib
from genjax.core.parallel import DATA_AXIS, under_axis


def _config_error(message: str):
  from genjax.config import ConfigError  # the user's error type; config imports nothing of genjax

  return ConfigError(message)


@dataclasses.dataclass(frozen=True, eq=False)
class Placement:
  """Devices, mesh and shardings of one run (see the module docstring); built by `place`."""

  mode: str
  devices: Tuple[Any, ...]  # the devices the step runs on (pmap: this process's)
  mesh: Optional[Mesh]
  num_devices: int
  data_parallel: int
  model_parallel: int = 1
  batch_shards: int = 1
  batch_shard: int = 0
  state_sharding: Any = None

  @property
  def on_mesh(self) -> bool:
    return self.mesh is not None

  @property
  def batch_splits(self) -> int:
    """The pieces each call's batch is cut into before the step function sees it: one per
    device under pmap, 1 on a mesh (where the step function sees the global batch)."""
    return 1 if self.on_mesh else self.num_devices

  @property
  def replicated(self):
    if self.on_mesh:
      return NamedSharding(self.mesh, P())
    return jax.sharding.SingleDeviceSharding(self.devices[0])

  @property
  def devices_here(self):
    return [d for d in self.devices if d.process_index == jax.process_index()]

  def batch_sharding(self, stacked: bool = False) -> NamedSharding:
    """Batches are split along the data axis ([K, B, ...] stacks of K steps: along B)."""
    return NamedSharding(self.mesh, P(None, DATA_AXIS) if stacked else P(DATA_AXIS))

  def describe(self) -> Dict[str, Any]:
    """What the run summary records."""
    return {"mode": self.mode, "devices": self.num_devices, "model_parallel": self.model_parallel}

  # -- checks ---------------------------------------------------------------------------------

  def check_batches(self, train_batch: int, eval_batch: int):
    """ConfigError unless both global batches split evenly over the data axis and the processes."""
    n = self.data_parallel
    if train_batch % n:
      lo, hi = train_batch // n * n, -(-train_batch // n) * n
      raise _config_error(
        f"config.train.batch_size = {train_batch} does not divide over {n} devices: "
        f"use a multiple of {n} (e.g. --config.train.batch_size={hi}{f' or {lo}' if lo else ''}) "
        f"or set --config.parallel.num_devices."
      )
    if eval_batch % n:
      raise _config_error(
        f"config.eval.batch_size = {eval_batch} does not divide over {n} devices: use a multiple of {n}."
      )
    if train_batch % self.batch_shards:
      raise _config_error(
        f"config.train.batch_size = {train_batch} does not divide over {self.batch_shards} processes."
      )

  # -- states: replicated or sharded (mesh modes), one copy per device (pmap) ------------------

  def for_state(self, abstract_state, rules: sharding_lib.Rules = ()) -> "Placement":
    """This placement with the shardings of a state shaped like `abstract_state`: on a mesh
    replicated ("jit") or FSDP-sharded ("fsdp"), the parameters that `rules` name split over the
    model axis; under pmap replicated on the first device (one copy per device when put)."""
    if self.on_mesh:
      shardings = sharding_lib.state_shardings(abstract_state, self.mesh, rules, fsdp=self.mode == "fsdp")
    else:
      shardings = jax.tree.map(lambda _: self.replicated, abstract_state)
    return dataclasses.replace(self, state_sharding=shardings)

  def abstract(self, abstract_state):
    """`abstract_state` with this placement's shardings (what a checkpoint is restored into)."""
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

  # -- batches: each process gives its part, the global batch is sharded over the data axis ----

  def put_batch(self, local_batch: Dict[str, np.ndarray], stacked: bool = False):
    """This process's part of the global batch ([b, ...], or [K, b, ...] when `stacked`) as the
    global batch the compiled step takes."""
    if self.on_mesh:
      sharding, axis = self.batch_sharding(stacked), 1 if stacked else 0

      def put(x):
        shape = x.shape[:axis] + (x.shape[axis] * self.batch_shards,) + x.shape[axis + 1 :]
        return jax.make_array_from_process_local_data(sharding, x, shape)

      return jax.tree.map(put, local_batch)
    d = len(self.devices)
    if stacked:  # [K, b, ...] -> [d, K, b/d, ...]
      return jax.tree.map(lambda x: np.swapaxes(x.reshape((x.shape[0], d, -1) + x.shape[2:]), 0, 1), local_batch)
    return jax.tree.map(lambda x: x.reshape((d, -1) + x.shape[1:]), local_batch)

  def compile(self, fn, returns_state: bool, stacked: bool = False):
    """Compiles `fn(state, batch, rng)`; the old state's buffers are donated when it returns one.
    stacked: the batch is [K, B, ...] (K steps' batches, as `put_batch(..., stacked=True)` lays
    them out), sharded along B. Under pmap, `fn` is traced inside `parallel.mapped_over`."""
    donate = (0,) if returns_state else ()
    if self.on_mesh:
      state = self.state_sharding if self.state_sharding is not None else self.replicated
      out = (state, self.replicated) if returns_state else self.replicated
      return jax.jit(
        fn,
        in_shardings=(state, self.batch_sharding(stacked), self.replicated),
        out_shardings=out,
        donate_argnums=donate,
      )
    return jax.pmap(
      under_axis(fn, DATA_AXIS), axis_name=DATA_AXIS, in_axes=(0, 0, None), devices=self.devices, donate_argnums=donate
    )

  def host_metrics(self, metrics):
    metrics = jax.device_get(metrics)
    return metrics if self.on_mesh else jax.tree.map(lambda x: x[0], metrics)  # pmap: device 0's copy


# ----------------------------------------------------------------------------------------------
# Building a placement
# ----------------------------------------------------------------------------------------------


def place(parallel, devices: Optional[Sequence[Any]] = None) -> Placement:
  """The placement `parallel` (a config.Parallel) asks for on `devices` (default: every device
  of every process); ConfigError, before anything compiles, for what the devices cannot do."""
  devices = list(devices if devices is not None else jax.devices())
  processes = sorted({d.process_index for d in devices})
  if parallel.mode == "pmap":
    return _place_pmap(parallel, devices, processes)
  n = parallel.num_devices or len(devices)
  if n > len(devices):
    raise _config_error(
      f"config.parallel.num_devices = {n} but only {len(devices)} devices exist ({devices[0].platform}). "
      f"Use at most {len(devices)}, or leave it unset for all."
    )
  if n != len(devices) and len(processes) > 1:
    raise _config_error("config.parallel.num_devices must cover every device in multi-host runs.")
  m = parallel.model_parallel
  if n % m:
    raise _config_error(
      f"config.parallel.model_parallel = {m} does not divide the {n} devices: use a divisor of the device count."
    )
  axes = (DATA_AXIS, sharding_lib.MODEL_AXIS) if m > 1 else (DATA_AXIS,)
  shape = (n // m, m) if m > 1 else (n,)
  auto = (jax.sharding.AxisType.Auto,) * len(axes)
  mesh = jax.make_mesh(shape, axes, devices=devices[:n], axis_types=auto)
  shards, shard = _batch_shards(mesh, jax.process_index())
  return Placement(parallel.mode, tuple(devices[:n]), mesh, n, n // m, m, shards, shard)


def _place_pmap(parallel, devices, processes) -> Placement:
  here = [d for d in devices if d.process_index == jax.process_index()]
  local = parallel.num_devices or len(here)
  if local > len(here):
    raise _config_error(f"config.parallel.num_devices = {local} but this process has {len(here)} devices.")
  n = local * len(processes)
  return Placement("pmap", tuple(here[:local]), None, n, n, 1, len(processes), processes.index(jax.process_index()))


def _batch_shards(mesh: Mesh, process: int) -> Tuple[int, int]:
  """(how many distinct parts of the global batch the processes load, the one `process` loads).
  Rows of the data axis that one process's devices hold are that process's part; processes
  whose devices share rows (a model axis spanning processes) load the same rows."""
  rows = mesh.devices.reshape(mesh.devices.shape[0], -1)  # [data, model]
  owners = [{d.process_index for d in row} for row in rows]
  blocks = sorted({tuple(i for i, o in enumerate(owners) if p in o) for o in owners for p in o})
  size = len(blocks[0])
  contiguous = all(b == tuple(range(b[0], b[0] + size)) for b in blocks)
  if not contiguous or any(len(b) != size for b in blocks) or size * len(blocks) != len(rows):
    raise _config_error(
      f"The {len(rows)} rows of the data axis are shared unevenly between processes ({blocks}): "
      "choose config.parallel.model_parallel so that each process's devices hold whole rows "
      "(a divisor or a multiple of the devices per process)."
    )
  mine = tuple(i for i, o in enumerate(owners) if process in o)
  return len(blocks), blocks.index(mine)
