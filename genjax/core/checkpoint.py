"""Orbax checkpoints of the train state together with the data position and the config.

Layout: WORKDIR/checkpoints/<step>/{state,meta}. `meta` is JSON (config, data position,
data info with the tokenizer), `state` is the TrainState pytree; nothing is pickled, so loading
a checkpoint never executes code. Saves are asynchronous; Orbax writes each step into a
temporary folder and renames it when complete, so a process killed mid-save leaves the previous
checkpoints intact. A latest checkpoint that cannot be read (truncated or corrupt files) is
moved aside to WORKDIR/checkpoints_corrupt/ with a warning and the one before it is used.
"""

import logging
import time
from typing import Any, Optional, Tuple

import jax
import orbax.checkpoint as ocp

from genjax import paths
from genjax.errors import CheckpointError  # noqa: F401 - re-exported

log = logging.getLogger("genjax")


class Checkpoints:
  """A thin layer over `ocp.CheckpointManager` with fall-back on unreadable checkpoints."""

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
    self.workdir = str(paths.path(workdir))
    self.directory = paths.join(self.workdir, "checkpoints")
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=async_save, cleanup_tmp_directories=True
    )
    try:
      self.manager = ocp.CheckpointManager(paths.path(self.directory), options=options, item_names=("state", "meta"))
    except OSError as e:
      raise CheckpointError(
        f"Cannot create the checkpoint folder {self.directory}: {e}. "
        "Choose a --workdir on a writable disk with free space."
      ) from e

  def steps(self):
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, meta: dict, force: bool = True) -> bool:
    """Starts an asynchronous save; returns when the arrays are copied off the devices."""
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
    are set aside like in `restore_latest`."""
    for step in reversed(self.steps()):
      try:
        return step, self.read_meta(step)
      except Exception as e:  # noqa: BLE001 - truncated JSON, missing folder, ...
        self._set_aside(step, e)
    return None

  def restore(self, step: int, abstract_state: Any) -> Tuple[Any, dict]:
    """(state, meta) of checkpoint `step`; `abstract_state` as for `restore_latest`."""
    restored = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
    )
    return restored["state"], restored["meta"]

  def restore_latest(self, abstract_state: Any) -> Optional[Tuple[int, Any, dict]]:
    """(step, state, meta) of the newest readable checkpoint, or None when there is none.
    `abstract_state` is a pytree of jax.ShapeDtypeStruct (with shardings) like the state."""
    for step in reversed(self.steps()):
      try:
        return (step, *self.restore(step, abstract_state))
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint falls back the same way
        self._set_aside(step, e)
    return None

  def _set_aside(self, step: int, error: Exception):
    target = paths.join(self.workdir, "checkpoints_corrupt", f"{step}-{int(time.time())}")
    log.warning(
      "Checkpoint %d in %s cannot be read (%s: %s). Moving it to %s and falling back to the one before it.",
      step,
      self.directory,
      type(error).__name__,
      str(error).splitlines()[0][:300] if str(error) else "",
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


def _sync(name: str):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
