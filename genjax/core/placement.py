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

`for_state` refuses a model axis that splits none of the state (with the model_parallel values
that would), and `state_report` is the line a sharded run logs (bytes per device against one whole
copy) with a warning when FSDP splits under half of it. `check_fits` refuses a request (samples,
a batch) that cannot fit in a device's memory, saying what it would need.

Nothing mutates a Placement: `for_state` returns a new one. Everything that needs a device count
or a sharding (validation, the data shares, the compiled steps, the run summary, the benchmarks)
reads it from here.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
    placed = dataclasses.replace(self, state_sharding=shardings)
    if self.on_mesh and self.model_parallel > 1:
      _check_model_axis(placed, abstract_state, rules)
    return placed

  @property
  def sharded(self) -> bool:
    """Whether the state is meant to be split: FSDP over a data axis of several devices, or a model axis."""
    return self.on_mesh and ((self.mode == "fsdp" and self.data_parallel > 1) or self.model_parallel > 1)

  def state_report(self, abstract_state, rules: sharding_lib.Rules = ()) -> Tuple[str, List[str]]:
    """(one line: the bytes of the state each device holds against one whole copy, and the arrays
    split; warnings for a sharded layout that splits under half the state's bytes). ("", []) when
    the state is not meant to be sharded. Call on the placement `for_state` returned."""
    if not self.sharded or self.state_sharding is None:
      return "", []
    cov = sharding_lib.coverage(abstract_state, self.state_sharding)
    size = sharding_lib.format_bytes
    axes = [f"{cov.split_arrays.get(a, 0)} over the {a} axis" for a in (DATA_AXIS, sharding_lib.MODEL_AXIS)]
    line = (
      f"state: {size(cov.bytes_per_device)} per device, {size(cov.total_bytes)} replicated "
      f"({cov.total_bytes / max(cov.bytes_per_device, 1):.1f}x less; {self.mode} on {self.num_devices} devices, "
      f"model axis {self.model_parallel}); of its {cov.arrays} arrays {axes[0]}"
      + (f", {axes[1]}" if self.model_parallel > 1 else "")
      + " are split"
    )
    warnings = []
    if self.mode == "fsdp" and self.data_parallel > 1 and cov.fraction(DATA_AXIS) < 0.5:
      warnings.append(_fsdp_warning(self, abstract_state, rules, cov))
    if self.model_parallel > 1 and cov.fraction(sharding_lib.MODEL_AXIS) < 0.5:
      warnings.append(
        f"config.parallel.model_parallel = {self.model_parallel} splits only "
        f"{cov.fraction(sharding_lib.MODEL_AXIS):.0%} of the state's bytes over the model axis (the rest, "
        "embeddings and what the family's partition rules do not name, is whole on every device of it)."
      )
    return line, warnings

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
    spans every process, so every process must take part in whatever uses it. Under pmap it is the
    first device's copy, read from that device's buffer when one process holds every copy:
    indexing (x[0]) would run, for each leaf, a program over all the devices whose partitioned
    gather ends in an all-reduce, and with those dispatched back to back a CI worker's simulated
    devices deadlocked in one (7 of 8 arrived; XLA:CPU's collective timeout aborted the worker,
    2026-12-06)."""
    if self.on_mesh:
      return state

    def first(x):
      if isinstance(x, jax.Array) and x.is_fully_addressable and len(x.sharding.device_set) > 1:
        shard = next(s for s in x.addressable_shards if s.index[0].start in (0, None))
        return shard.data.reshape(x.shape[1:])  # [1, ...] or [...], by jax version
      return x[0]

    return jax.tree.map(first, state)

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


# ----------------------------------------------------------------------------------------------
# A sharded layout that splits little: the sizes that would split more
# ----------------------------------------------------------------------------------------------

TRIED_SIZES = range(2, 65)  # the axis sizes a refusal or a warning considers


def _check_model_axis(placed: Placement, abstract_state, rules):
  """ConfigError when a model axis splits none of the state: each group of model_parallel devices
  would hold and compute the same whole model. The message gives the sizes that would split it."""
  m, n = placed.model_parallel, placed.num_devices
  cov = sharding_lib.coverage(abstract_state, placed.state_sharding)
  if cov.split_arrays.get(sharding_lib.MODEL_AXIS, 0):
    return
  named = sharding_lib.named_shapes(abstract_state)
  dims = sharding_lib.model_dims(named, rules)
  waste = f"so each group of {m} devices would hold and compute the same whole model"
  if not dims:
    raise _config_error(
      f"config.parallel.model_parallel = {m} splits none of the {cov.arrays} arrays of the state: this "
      f"family's partition rules name no dimension for the model axis (tensor parallelism splits a "
      f"transformer's attention heads and MLP units), {waste}. Leave --config.parallel.model_parallel=1 "
      "(--config.parallel.mode=fsdp shards the state over every device instead)."
    )
  fsdp = placed.mode == "fsdp"
  splits = [k for k in TRIED_SIZES if sharding_lib.split_fraction(named, rules, {"model": k}, fsdp, "model") > 0]
  fitting = [k for k in splits if n % k == 0]
  named_dims = "; ".join(f"{a}: {', '.join(map(str, sizes))}" for a, sizes in dims.items())
  if fitting:
    fix = (
      f"Use --config.parallel.model_parallel={_either(fitting)} (what splits them and divides the {n} devices), or 1."
    )
  elif splits:
    fix = (
      f"Values that split them ({_either(splits[:6])}) do not divide the {n} devices: use one with "
      "--config.parallel.num_devices set to a multiple of it, or --config.parallel.model_parallel=1."
    )
  else:
    fix = "Leave --config.parallel.model_parallel=1."
  raise _config_error(
    f"config.parallel.model_parallel = {m} splits none of the {cov.arrays} arrays of the state over the "
    f"model axis: the dimensions it would split ({named_dims}) do not divide by {m}, {waste}. {fix}"
  )


def _fsdp_warning(placed: Placement, abstract_state, rules, cov) -> str:
  """What a warning says of FSDP that splits under half the state, with data-axis sizes that split more."""
  d, m = placed.data_parallel, placed.model_parallel
  named = sharding_lib.named_shapes(abstract_state)
  share = lambda k: sharding_lib.split_fraction(named, rules, {DATA_AXIS: k, "model": m}, True, DATA_AXIS)  # noqa: E731
  better = [k for k in TRIED_SIZES if k != d and share(k) >= 0.5]
  better = sorted(better, key=lambda k: (abs(k - d), k))[:4]
  size = sharding_lib.format_bytes
  why = (
    f"FSDP splits an array of at least {sharding_lib.FSDP_MIN_SIZE} elements along a dimension that "
    f"divides by the data axis ({d} devices here)"
  )
  fix = (
    f" A data axis of {_either(sorted(better))} devices would split more than half "
    "(--config.parallel.num_devices, with model_parallel, sets it)."
    if better
    else f" No data axis up to {TRIED_SIZES[-1]} devices would split half of it: --config.parallel.mode=jit does the same with less."
  )
  return (
    f"config.parallel.mode = 'fsdp' splits {cov.split_arrays.get(DATA_AXIS, 0)} of the {cov.arrays} arrays of the "
    f"state ({cov.fraction(DATA_AXIS):.0%} of its {size(cov.total_bytes)}), so each device holds "
    f"{size(cov.bytes_per_device)} of it: {why}.{fix}"
  )


def _either(values) -> str:
  values = [str(v) for v in values]
  return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


# ----------------------------------------------------------------------------------------------
# Memory: what an array of a requested size would need, against what a device has
# ----------------------------------------------------------------------------------------------


def memory_bytes(device) -> Tuple[Optional[int], str]:
  """(the bytes arrays may take on `device`, where that figure comes from): an accelerator's
  allocator limit less what it holds; on a CPU the host's available memory (/proc/meminfo's
  MemAvailable, else all physical memory). (None, "") when it cannot be told."""
  if device.platform != "cpu":
    try:
      stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without statistics: unknown, not an error
      stats = {}
    if "bytes_limit" in stats:
      return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.device_kind}'s memory"
    return None, ""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024, "the host's available memory"
  except (OSError, ValueError, IndexError):
    pass
  try:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "the host's memory"
  except (ValueError, OSError, AttributeError):
    return None, ""


def check_fits(count: int, item_bytes: int, what: str, fix: str, device) -> None:
  """ConfigError, before anything is allocated, when `count` items of `item_bytes` each (`what`,
  e.g. "samples of shape (8, 8, 1) in one call") cannot fit in `device`'s memory; `fix` says
  which flag or field asks for fewer."""
  available, source = memory_bytes(device)
  need = count * item_bytes
  if available is None or need <= available:
    return
  size = sharding_lib.format_bytes
  raise _config_error(
    f"{count:,} {what} need at least {size(need)} (4 bytes a value, before any working memory), more than the "
    f"{size(available)} of {source}: at most about {available // max(item_bytes, 1):,} fit. {fix}"
  )
