"""A run's folder: what is in it, reading it back, writing into it safely.

    WORKDIR/config.json          the resolved Experiment (written once per start)
    WORKDIR/metrics.jsonl        one JSON object per logged step (genjax.trainer.writers)
    WORKDIR/tensorboard/         TensorBoard events
    WORKDIR/samples/             a PNG grid (or text) per evaluation
    WORKDIR/checkpoints/<step>/  Orbax: train state + meta (config, data position, data info)
    WORKDIR/checkpoints_corrupt/ checkpoints train found unreadable, moved aside and kept
    WORKDIR/eval.jsonl           results of python -m genjax.evaluate

`load(workdir)` rebuilds the run's compiled program and its state from nothing but the folder,
writing nothing into it: it is what sample, evaluate and the feature networks use.
"""

import json
import os
import time
from typing import Optional

import jax

from genjax import config as config_lib
from genjax import errors, families, paths
from genjax.core import checkpoint as ckpt_lib
from genjax.data.info import DataInfo
from genjax.trainer import program as program_lib

# Fields that may change between the runs that share a workdir; any other difference means the
# workdir holds a different experiment and resuming from it is refused.
RESUMABLE_CHANGES = (
  "name",
  "train.steps",
  "train.log_every",
  "train.eval_every",
  "train.checkpoint_every",
  "train.keep_checkpoints",
  "train.async_checkpoints",
  "train.progress",
  "train.steps_per_call",
  "train.profile_steps",
  "eval.",
  "parallel.",
  "data.data_dir",
  "data.manual_dir",
  "data.in_memory_max_mb",
  "data.decode_threads",
)


def config_path(workdir: str) -> str:
  return paths.join(workdir, "config.json")


def load_config(workdir: str) -> config_lib.Experiment:
  """The Experiment a run in `workdir` was started with."""
  path = config_path(workdir)
  try:
    text = paths.read_text(path) if paths.exists(path) else None
  except Exception as e:  # noqa: BLE001 - each store raises its own types
    raise paths.storage_error(e, workdir, "read the workdir") from None
  if text is None:
    raise errors.MissingError(
      f"{path} does not exist: is {workdir!r} a genjax workdir? Train first with python -m genjax.train --workdir DIR."
    )
  try:
    data = json.loads(text)
    return config_lib.from_dict(data, families.model_classes())
  except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as e:
    raise config_lib.ConfigError(
      f"{path} cannot be read ({type(e).__name__}: {e}): the workdir's config is damaged "
      "or not genjax's. Nothing was changed; use another --workdir."
    ) from None


def prepare(workdir: str, exp: config_lib.Experiment):
  """Creates `workdir`, checking it is writable (by writing and deleting a probe file) and holds
  no run of another experiment."""
  paths.check_reachable(workdir, "write the --workdir")
  try:
    paths.makedirs(workdir)
    probe = paths.path(paths.join(workdir, f".genjax_write_probe_{os.getpid()}_{jax.process_index()}"))
    probe.write_text("genjax checks that it can write here\n")
    probe.unlink()
  except Exception as e:  # noqa: BLE001 - each store raises its own types; all mean "cannot write"
    raise paths.storage_error(e, workdir, "write the --workdir") from None
  check_same_experiment(workdir, exp)


def write_config(workdir: str, exp: config_lib.Experiment):
  """The resolved config, as config.json (written by process 0 at every start)."""
  paths.write_atomic(config_path(workdir), config_lib.to_json(exp))


def check_same_experiment(workdir: str, exp: config_lib.Experiment):
  """ConfigError when `workdir` holds a run of another experiment (see RESUMABLE_CHANGES)."""
  path = config_path(workdir)
  if not paths.exists(path):
    return
  try:
    old = load_config(workdir)
  except (ValueError, TypeError, KeyError) as e:
    raise config_lib.ConfigError(
      f"{path} exists but cannot be read ({e}); this workdir holds something else. Use a new --workdir."
    ) from e
  changed = [k for k in config_lib.diff(old, exp) if not k.startswith(RESUMABLE_CHANGES)]
  if changed:
    shown = ", ".join(f"{k} ({_get(old, k)!r} -> {_get(exp, k)!r})" for k in changed[:8])
    raise config_lib.ConfigError(
      f"The workdir {workdir} holds a run of a different experiment; differing fields: {shown}"
      f"{' ...' if len(changed) > 8 else ''}. Resuming it with this config would mix two models. "
      "Use a new --workdir, or the config the run was started with."
    )


def _get(exp, dotted):
  node = exp
  for part in dotted.split("."):
    node = getattr(node, part, None)
  return node


def load(workdir: str, step: Optional[int] = None, overrides=()):
  """Reads a run back: (program, state). The program is the run's experiment compiled for this
  process's first device (genjax.trainer.program); the state is the newest readable checkpoint
  (or `step`), as one copy on that device. Nothing but the workdir is needed, and nothing in it
  is written, moved or deleted: an unreadable newest checkpoint is passed over with a warning
  (genjax.core.checkpoint). `overrides` (["--config.model.clip_denoised=false", ...]) change the
  experiment read back, for settings that leave the state's arrays alone (e.g. how a diffusion
  model is evaluated); one that changes them is refused before any array is read."""
  trained = load_config(workdir)
  exp = config_lib.apply_overrides(trained, list(overrides)) if overrides else trained
  checkpoints = ckpt_lib.Checkpoints(workdir, read_only=True)
  try:
    if not checkpoints.steps():
      raise errors.MissingError(
        f"No checkpoint in {checkpoints.directory}: train longer than "
        "train.checkpoint_every steps, or check the --workdir."
      )
    found = checkpoints.latest_meta() if step is None else (step, checkpoints.read_meta(step))
    if found is None:
      raise ckpt_lib.CheckpointError(_none_readable(checkpoints))
    info = DataInfo.from_dict(found[1]["data_info"])
    program = program_lib.build(exp, info, program_lib.one_device())
    try:
      restored = program.restore(checkpoints, step)
    except ckpt_lib.StructureMismatch as e:
      if not overrides:
        raise
      raise config_lib.ConfigError(_changed_by_overrides(trained, list(overrides), info, e)) from None
    if restored is None:
      raise ckpt_lib.CheckpointError(_none_readable(checkpoints))
  finally:
    checkpoints.close()
  return program, restored[1]


def _none_readable(checkpoints) -> str:
  steps = ", ".join(str(s) for s in sorted(checkpoints.unreadable))
  return (
    f"No readable checkpoint in {checkpoints.directory}: checkpoint(s) {steps} cannot be read (the "
    "warnings above say why). Nothing was changed. `python -m genjax.train` in "
    f"this workdir moves them to {checkpoints.quarantine}/ and stops; train again in a new --workdir, or "
    "with --restart_from_scratch in this one."
  )


def _changed_by_overrides(trained, overrides, info, mismatch) -> str:
  """The paragraph for overrides that change the arrays a checkpoint holds, naming the ones that
  do (each alone, where one alone does) and the first arrays that differ."""
  shapes = lambda exp: ckpt_lib.shapes_of(program_lib.abstract_state_of(exp, info))  # noqa: E731
  base = shapes(trained)
  guilty = [o for o in overrides if shapes(config_lib.apply_overrides(trained, [o])) != base] or overrides
  names = ", ".join(o.removeprefix("--") for o in guilty)
  return (
    f"{names} {'changes' if len(guilty) == 1 else 'change'} the {ckpt_lib.parts_differing(mismatch.differences)} "
    f"that the run's checkpoints hold (checkpoint {mismatch.step} in {mismatch.directory}: "
    f"{ckpt_lib.describe_differences(mismatch.differences)}). A run is read back as it was trained: drop the "
    "override (overrides may change only how the run is evaluated, e.g. --config.model.clip_denoised=false). "
    "Nothing in the workdir was changed."
  )


def restore(workdir: str, step: Optional[int] = None, overrides=()):
  """`load`'s program and state as (exp, family, state, info)."""
  program, state = load(workdir, step, overrides)
  return program.exp, program.family, state, program.info


def truncate_metrics(workdir: str, step: int):
  """Drops records past the restored step: the resumed run writes them again, identically."""
  from genjax.trainer import writers

  records = [r for r in writers.read_metrics(workdir) if r["step"] <= step]
  paths.write_atomic(paths.join(workdir, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in records))


def set_aside_metrics(workdir: str, folder: str):
  """A run restarted from step 0 (train --restart_from_scratch): the old run's metrics.jsonl moves
  to `folder` (beside its unreadable checkpoints) so the new run's records start a file of their own."""
  path = paths.join(workdir, "metrics.jsonl")
  if paths.exists(path):
    paths.move(path, paths.join(folder, f"metrics-{int(time.time())}.jsonl"))
