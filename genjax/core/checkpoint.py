"""Orbax checkpoints of the train state together with the data position and the config.

Layout: WORKDIR/checkpoints/<step>/{state,meta}. `meta` is JSON (config, data position,
data info with the tokenizer), `state` is the TrainState pytree; nothing is pickled, so loading
a checkpoint never executes code. Saves are asynchronous; Orbax writes each step into a
temporary folder and renames it when complete, so a process killed mid-save leaves the previous
checkpoints intact.

Two ways a checkpoint can fail to come back, told apart before any array is read:

- it holds another structure than the state it is restored into (another config's parameter
  shapes, optimizer or EMA): `StructureMismatch`, an error naming the arrays that differ. The
  checkpoint is healthy and is never touched.
- it cannot be read (truncated or missing files, bad bytes). A writable `Checkpoints` (the train
  loop's) moves it to WORKDIR/checkpoints_corrupt/<step>-<time>/ with one warning line and tries
  the one before it; the moved data is kept, never deleted. A `read_only` one (sample, evaluate,
  the feature networks) warns and reads the one before it, moving nothing: read-only commands
  never write, move or delete anything under checkpoints/.
"""

import logging
import re
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import orbax.checkpoint as ocp

from genjax import paths
from genjax.errors import CheckpointError

log = logging.getLogger("genjax")
QUARANTINE = "checkpoints_corrupt"


class StructureMismatch(CheckpointError):
  """A readable checkpoint whose arrays are not those of the state it is restored into."""

  def __init__(self, step: int, directory: str, differences: List[str]):
    self.step, self.directory, self.differences = step, directory, differences
    super().__init__(
      f"Checkpoint {step} in {directory} holds other {parts_differing(differences)} than this config "
      f"builds ({describe_differences(differences)}): it was written by another config or another version "
      "of the model code. Nothing was moved or changed. Use the config the run was trained with, "
      "or a new --workdir."
    )


class Checkpoints:
  """A thin layer over `ocp.CheckpointManager`: falls back past unreadable checkpoints, refuses
  ones of another structure; `read_only` for every command but train (see the module docstring)."""

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True, read_only: bool = False):
    self.workdir = str(paths.path(workdir))
    self.directory = paths.join(self.workdir, "checkpoints")
    self.read_only = read_only
    self.unreadable: Dict[int, str] = {}  # step -> why, found by this object (read-only: left in place)
    # Orbax's own read_only option logs a warning per setting it changes; these are the same settings.
    options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else keep,
      create=not read_only,
      enable_async_checkpointing=async_save and not read_only,
      cleanup_tmp_directories=not read_only,  # a read-only command must not delete a running save's folder
    )
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    try:
      self.manager = ocp.CheckpointManager(paths.path(self.directory), options=options, item_handlers=handlers)
    except OSError as e:
      raise CheckpointError(
        f"Cannot create the checkpoint folder {self.directory}: {e}. "
        "Choose a --workdir on a writable disk with free space."
      ) from e
    # Orbax removes unfinished saves' folders in a background thread that close() does not wait
    # for: a start refused right away would leave it to die at interpreter shutdown, with a
    # traceback. It is a listing of one folder; wait for it here.
    getattr(self.manager, "_maybe_await_cleanup_tmp_directory", lambda: None)()

  @property
  def quarantine(self) -> str:
    return paths.join(self.workdir, QUARANTINE)

  def steps(self) -> List[int]:
    """The checkpoints' steps, oldest first, less those this object found unreadable."""
    return sorted(s for s in self.manager.all_steps() if s not in self.unreadable)

  def save(self, step: int, state: Any, meta: dict, force: bool = True) -> bool:
    """Starts an asynchronous save; returns when the arrays are copied off the devices."""
    assert not self.read_only, "a read-only Checkpoints never saves"
    try:
      return self.manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force
      )
    except OSError as e:
      raise CheckpointError(
        f"Saving checkpoint {step} to {self.directory} failed: {e}. "
        "Free disk space or choose another --workdir; earlier checkpoints are untouched."
      ) from e
    except Exception as e:  # a bucket's client raises its own types (HTTP errors, auth errors)
      if not paths.is_remote(self.directory):
        raise
      raise CheckpointError(
        f"{paths.storage_error(e, self.directory, f'save checkpoint {step} to')} Earlier checkpoints are untouched."
      ) from None

  def reached_preemption(self, step: int) -> bool:
    """Multi-process runs: whether JAX's preemption service asks every process to stop at `step`."""
    return self.manager.reached_preemption(step)

  def wait(self):
    self.manager.wait_until_finished()

  def read_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def latest_meta(self) -> Optional[Tuple[int, dict]]:
    """(step, meta) of the newest checkpoint whose meta can be read, or None; unreadable ones
    are handled as in `restore_latest`."""
    for step in reversed(self.steps()):
      try:
        return step, self.read_meta(step)
      except Exception as e:  # noqa: BLE001 - truncated JSON, missing folder, ...
        self._unreadable(step, e)
    return None

  def differences(self, step: int, abstract_state: Any) -> List[str]:
    """How checkpoint `step`'s arrays differ from `abstract_state`'s (paths and shapes; empty when
    they agree), read from the checkpoint's metadata alone. Raises when that cannot be read."""
    stored = self.manager.item_metadata(step)["state"]
    if stored is None:
      raise ValueError("the checkpoint's state metadata is missing")
    return structure_differences(shapes_of(stored), shapes_of(abstract_state))

  def restore(self, step: int, abstract_state: Any) -> Tuple[Any, dict]:
    """(state, meta) of checkpoint `step`; `abstract_state` as for `restore_latest`. Raises
    StructureMismatch, without reading an array, when the checkpoint holds another structure."""
    _quiet_abandoned_reads()
    differences = self.differences(step, abstract_state)  # unreadable metadata raises: an unreadable checkpoint
    if differences:
      raise StructureMismatch(step, self.directory, differences)
    restored = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
    )
    return restored["state"], restored["meta"]

  def restore_latest(self, abstract_state: Any) -> Optional[Tuple[int, Any, dict]]:
    """(step, state, meta) of the newest readable checkpoint, or None when there is none.
    `abstract_state` is a pytree of jax.ShapeDtypeStruct (with shardings) like the state.
    StructureMismatch passes through: another structure is the caller's error, never damage."""
    for step in reversed(self.steps()):
      try:
        return (step, *self.restore(step, abstract_state))
      except StructureMismatch:
        raise
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint falls back the same way
        self._unreadable(step, e)
    return None

  def quarantined(self) -> List[Tuple[int, str]]:
    """(step, folder) of every checkpoint set aside in WORKDIR/checkpoints_corrupt/, oldest first."""
    if not paths.isdir(self.quarantine):
      return []
    found = [re.fullmatch(r"(\d+)-\d+", p.name) for p in paths.path(self.quarantine).iterdir()]
    return sorted((int(m.group(1)), paths.join(self.quarantine, m.group(0))) for m in found if m)

  def _unreadable(self, step: int, error: Exception):
    """One warning line; a writable Checkpoints also moves the checkpoint to the quarantine."""
    self.unreadable[step] = reason = _reason(error)
    if self.read_only:
      log.warning(
        "Checkpoint %d in %s cannot be read (%s); trying the one before it. Nothing was moved "
        "(the next train in this workdir moves it to %s/).",
        step,
        self.directory,
        reason,
        QUARANTINE,
      )
      return
    target = paths.join(self.quarantine, f"{step}-{int(time.time())}")
    log.warning(
      "Checkpoint %d in %s cannot be read (%s); moved to %s (kept, never deleted); trying the one before it.",
      step,
      self.directory,
      reason,
      target,
    )
    if jax.process_index() == 0:
      source = paths.join(self.directory, str(step))
      if paths.exists(source):
        paths.move(source, target)
    _sync(f"genjax_set_aside_{step}")
    self.manager.reload()

  def close(self):
    self.manager.close()


# ----------------------------------------------------------------------------------------------
# Comparing structures
# ----------------------------------------------------------------------------------------------


def shapes_of(tree) -> Dict[str, Optional[tuple]]:
  """{"params/encoder/Dense_0/kernel": shape} of every leaf of a state, an abstract state or a
  checkpoint's metadata tree (dataclass fields, namedtuple fields and dict keys all read alike)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    parts = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path]
    shape = getattr(leaf, "shape", None)
    out["/".join(str(p) for p in parts)] = None if shape is None else tuple(shape)
  return out


def structure_differences(stored: Dict[str, Optional[tuple]], wanted: Dict[str, Optional[tuple]]) -> List[str]:
  """One line per array that a checkpoint (`stored`) and a state (`wanted`) disagree on."""
  out = []
  for key in sorted(stored.keys() | wanted.keys(), key=lambda k: (not k.startswith("params/"), k)):
    if key not in wanted:
      out.append(f"{key}: {_shape(stored[key])} in the checkpoint, absent here")
    elif key not in stored:
      out.append(f"{key}: absent in the checkpoint, {_shape(wanted[key])} here")
    elif None not in (stored[key], wanted[key]) and stored[key] != wanted[key]:
      out.append(f"{key}: {_shape(stored[key])} in the checkpoint, {_shape(wanted[key])} here")
  return out


# What each part of the TrainState (genjax.core.state) is called in a message.
PARTS = {
  "params": "parameters",
  "opt_state": "optimizer state",
  "ema_params": "EMA weights",
  "extra": "other collections (e.g. batch statistics)",
  "ema_extra": "EMA of the other collections",
}


def parts_differing(differences: List[str]) -> str:
  """The parts of the state that `differences` touch, e.g. "parameters and EMA weights"."""
  tops = (d.split(":")[0].split("/")[0] for d in differences)
  names = list(dict.fromkeys(PARTS.get(top, top) for top in tops)) or ["arrays"]
  return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def describe_differences(differences: List[str], shown: int = 3) -> str:
  """The first `shown` differences and how many more: short enough for one paragraph."""
  more = len(differences) - shown
  return "; ".join(differences[:shown]) + (f"; and {more} more array(s)" if more > 0 else "")


def _shape(shape) -> str:
  return "a value" if shape is None else str(shape)


def _reason(error: Exception) -> str:
  text = str(error).splitlines()[0] if str(error) else ""
  return f"{type(error).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


# ----------------------------------------------------------------------------------------------
# Orbax's abandoned reads
# ----------------------------------------------------------------------------------------------


def _quiet_abandoned_reads():
  """Drops the reports of reads that an already failed restore abandoned, and nothing else.

  Orbax restores a checkpoint's arrays concurrently on an event loop of its own
  (orbax.checkpoint._src.asyncio_utils.run_sync) and closes that loop as soon as one read fails.
  The tensorstore reads of the other arrays are still in flight: each one that finishes then
  calls `loop.call_soon_threadsafe` on the closed loop from tensorstore's thread, and tensorstore
  reports the RuntimeError("Event loop is closed") as an unraisable exception (a traceback on
  stderr, 0 to 60 of them per restore, racing the process's exit); asyncio logs the abandoned
  tasks ("Task exception was never retrieved"), and their coroutines complain when collected.
  The checkpoint has already been judged unreadable by then (genjax prints one line for it), so
  these reports say nothing more. Installed before every restore (the reports may arrive
  before the failure reaches genjax), once: it stays until someone replaces the hook; a
  structure mismatch never gets this far."""
  if not getattr(sys.unraisablehook, "genjax_quiet", False):
    previous = sys.unraisablehook

    def hook(unraisable):
      exc, obj = unraisable.exc_value, unraisable.object
      closed_loop = isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"
      orbax_coroutine = "orbax" in getattr(getattr(obj, "cr_code", None), "co_filename", "")
      if not (closed_loop or orbax_coroutine):
        previous(unraisable)

    hook.genjax_quiet = True
    sys.unraisablehook = hook
  asyncio_log = logging.getLogger("asyncio")
  if _abandoned_orbax_task not in asyncio_log.filters:
    asyncio_log.addFilter(_abandoned_orbax_task)


def _abandoned_orbax_task(record: logging.LogRecord) -> bool:
  """False (drop) for asyncio's report of an abandoned checkpoint read. Two forms were seen: the
  task runs one of orbax's coroutines (its name is in the message), or it wraps a tensorstore
  future (asyncio's `_wrap_awaitable`, so only the exception, a tensorstore error that carries
  its `tensorstore_spec`, tells where it came from)."""
  message = record.getMessage()
  if not message.startswith("Task exception was never retrieved"):
    return True
  exc = record.exc_info[1] if record.exc_info else None
  return not ("orbax" in message or "tensorstore_spec" in message or "tensorstore_spec" in str(exc))


def _sync(name: str):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
