"""Fault injection: every injected fault ends in a run that resumes bit for bit or in a clean
error that loses nothing. Each trial is recorded in the table printed at the end of the session.

The reference numbers are those of the same experiment trained without a fault; "bit-exact"
means every logged loss equals the reference's exactly (CPU, same devices)."""

import errno
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from genjax import config as config_lib
from genjax import data as data_lib
from genjax import paths
from genjax.core import checkpoint as ckpt_lib
from genjax.trainer import loop
from genjax.trainer import workdir as workdir_lib
from tests.reliability.procs import child_env, group, train_command, wait_until
from tests.trainer.helpers import losses, small_experiment, write_config

pytestmark = pytest.mark.slow
RESUMED, CLEAN = "resumed bit-exact", "failed cleanly, nothing lost"
RESTARTED = "restarted from 0 bit-exact, nothing lost"  # --restart_from_scratch beside kept checkpoints
SEED = int(os.environ.get("GENJAX_FAULT_SEED", "0"))  # set it to draw other kill moments


def committed(workdir):
  """Steps of the checkpoints Orbax finished writing (unfinished ones live in *.orbax-checkpoint-tmp*)."""
  folder = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(folder) else []


def quarantined(workdir):
  """Steps of the checkpoints train set aside in WORKDIR/checkpoints_corrupt/<step>-<time>/."""
  folder = os.path.join(workdir, "checkpoints_corrupt")
  return sorted(int(n.split("-")[0]) for n in os.listdir(folder) if n[0].isdigit()) if os.path.isdir(folder) else []


def unfinished_saves(workdir, after=0):
  """Steps > `after` whose save has started and not finished (a killed save leaves its folder)."""
  folder = os.path.join(workdir, "checkpoints")
  names = os.listdir(folder) if os.path.isdir(folder) else []
  return [int(n.split(".")[0]) for n in names if "orbax-checkpoint-tmp" in n and int(n.split(".")[0]) > after]


def evaluated(workdir):
  from genjax.trainer.writers import read_metrics

  return {r["step"] for r in read_metrics(workdir) if any(k.startswith("eval_") for k in r)}


def snapshot(folder):
  """{relative path: sha256} of every file under `folder`: proof that nothing was changed."""
  out = {}
  for root, _, files in os.walk(folder):
    for f in files:
      path = os.path.join(root, f)
      with open(path, "rb") as fh:
        out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
  return out


# ----------------------------------------------------------------------------------------------
# Real processes killed at random moments
# ----------------------------------------------------------------------------------------------

PHASES = (
  "SIGKILL during a step",
  "SIGKILL during an async save",
  "SIGKILL during evaluation",
  "SIGTERM (preemption, exit 75)",
)
TRIALS_PER_PHASE = int(os.environ.get("GENJAX_FAULT_TRIALS", "2"))  # raise it for a longer soak
STEPS, CHECKPOINT_EVERY, EVAL_EVERY = 100, 5, 10
TIMEOUT = 240


def _trigger(phase, workdir, rng, seen_before):
  """A predicate that holds at the moment this phase's signal should be sent. Only records of
  steps past `seen_before` count: the steps before it may still be in the files from the last run."""
  if phase.startswith("SIGKILL during a step") or phase.startswith("SIGTERM"):
    target = seen_before + rng.randint(1, 6)
    return lambda: max(losses(workdir), default=0) >= target
  if "save" in phase:
    return lambda: bool(unfinished_saves(workdir, after=seen_before))

  def in_eval():  # the loss of an eval step is logged and its eval record is not yet written
    pending = [s for s in losses(workdir) if s % EVAL_EVERY == 0 and s > seen_before]
    return bool(pending) and max(pending) not in evaluated(workdir)

  return in_eval


def test_killed_at_random_moments_every_run_resumes_bit_exact(tmp_path, fault_table):
  config = write_config(tmp_path / "exp.py", steps=STEPS, checkpoint_every=CHECKPOINT_EVERY, eval_every=EVAL_EVERY)
  full, run = str(tmp_path / "full"), str(tmp_path / "run")
  loop.train(config_lib.load_config_file(config), full)  # in this process: the same 8 CPU devices
  expected = losses(full)
  assert sorted(expected) == list(range(1, STEPS + 1))

  rng = random.Random(SEED)
  plan = [phase for phase in PHASES for _ in range(TRIALS_PER_PHASE)]
  rng.shuffle(plan)
  hits = {phase: 0 for phase in PHASES}
  for phase in plan:
    kept_before = committed(run)
    seen_before = max(losses(run), default=0)
    with group(tmp_path) as g:
      proc = g.start(train_command(config, run), child_env(8))
      fire = _trigger(phase, run, rng, seen_before)
      assert wait_until(fire, TIMEOUT, [proc], interval=0.005), f"{phase}: never reached\n{g.output()}"
      if phase.startswith("SIGTERM"):
        proc.send_signal(signal.SIGTERM)
        assert g.wait(TIMEOUT) == [loop.PREEMPTED_EXIT_CODE], g.output()
        assert "Rerun the same command to resume" in " ".join(g.output().split())  # messages are wrapped
        hit = max(losses(run)) in committed(run)  # it saved the step it stopped at
      else:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if "save" in phase:
          hit = bool(unfinished_saves(run, after=seen_before))  # the save really was cut short
        elif "evaluation" in phase:
          hit = not any(s % EVAL_EVERY == 0 and s > seen_before for s in evaluated(run))
        else:
          hit = True
    hits[phase] += hit
    seen = losses(run)
    assert all(seen[s] == expected[s] for s in seen), f"{phase}: losses differ after resuming"
    assert max(committed(run), default=0) >= max(kept_before, default=0), "a checkpoint was lost"
    fault_table.record(phase, RESUMED if hit else "signal missed the phase (resumed bit-exact)")
  with group(tmp_path) as g:
    g.start(train_command(config, run), child_env(8))
    assert g.wait(TIMEOUT) == [0], g.output()
  assert losses(run) == expected  # bit for bit, every one of the 100 steps
  assert not os.path.exists(os.path.join(run, "checkpoints_corrupt"))  # no kill left a checkpoint unreadable
  assert all(hits.values()), hits  # each phase was hit at least once


# ----------------------------------------------------------------------------------------------
# Faults injected in this process, on copies of one run stopped at step 8 of 12
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{"full": losses of 12 uninterrupted steps, "base": a workdir checkpointed at 4 and 8}."""
  root = tmp_path_factory.mktemp("runs")
  loop.train(small_experiment(steps=12), str(root / "full"))
  loop.train(small_experiment(steps=8), str(root / "base"))
  assert committed(str(root / "base")) == [4, 8]
  return {"full": losses(str(root / "full")), "base": str(root / "base")}


def _copy(runs, tmp_path, name="run"):
  target = str(tmp_path / name)
  shutil.copytree(runs["base"], target)
  return target


def _resume_bit_exact(workdir, runs):
  loop.train(small_experiment(steps=12), workdir)
  assert losses(workdir) == runs["full"]
  return RESUMED


def _corrupt_truncate_state(workdir):
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints", "8", "state")):
    for f in files:
      os.truncate(os.path.join(root, f), os.path.getsize(os.path.join(root, f)) // 2)


def _corrupt_truncate_meta(workdir):
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints", "8", "meta")):
    for f in files:
      os.truncate(os.path.join(root, f), 5)


def _corrupt_empty_files(workdir):
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints", "8")):
    for f in files:
      os.truncate(os.path.join(root, f), 0)


def _corrupt_delete_array_data(workdir, step=8):
  state = os.path.join(workdir, "checkpoints", str(step), "state")
  data = [
    os.path.join(r, f) for r, _, fs in os.walk(state) for f in fs if "d" in os.path.relpath(r, state).split(os.sep)
  ]
  for path in data or [os.path.join(r, f) for r, _, fs in os.walk(state) for f in fs]:
    os.remove(path)


@pytest.mark.parametrize(
  "corrupt", [_corrupt_truncate_state, _corrupt_truncate_meta, _corrupt_empty_files, _corrupt_delete_array_data]
)
def test_damaged_latest_checkpoint_falls_back_and_resumes_bit_exact(runs, tmp_path, corrupt, fault_table):
  workdir = _copy(runs, tmp_path)
  corrupt(workdir)
  before = snapshot(workdir)
  assert workdir_lib.restore(workdir)[2].step == 4  # sample / evaluate fall back too ...
  assert snapshot(workdir) == before  # ... and move nothing: only train sets a checkpoint aside
  fault_table.record("checkpoint files truncated or removed", _resume_bit_exact(workdir, runs))
  assert quarantined(workdir) == [8]  # set aside by train, kept


def test_every_checkpoint_damaged_is_a_clear_error(runs, tmp_path, fault_table):
  workdir = _copy(runs, tmp_path)
  for step in (4, 8):
    for root, _, files in os.walk(os.path.join(workdir, "checkpoints", str(step), "state")):
      for f in files:
        os.truncate(os.path.join(root, f), 0)
  before = snapshot(workdir)
  with pytest.raises(
    ckpt_lib.CheckpointError, match="No readable checkpoint.*4, 8 cannot be read.*Nothing was changed"
  ):
    workdir_lib.restore(workdir)
  assert snapshot(workdir) == before
  fault_table.record("every checkpoint damaged (sample/evaluate)", CLEAN)


def test_save_failing_with_a_full_disk_keeps_earlier_checkpoints(runs, tmp_path, monkeypatch, fault_table):
  workdir = _copy(runs, tmp_path)
  before = snapshot(os.path.join(workdir, "checkpoints", "8"))
  original = ocp.CheckpointManager.save

  def full_disk(self, step, *args, **kwargs):
    if step >= 12:
      raise OSError(errno.ENOSPC, "No space left on device")
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
  with pytest.raises(ckpt_lib.CheckpointError, match=r"Saving checkpoint 12 .* No space left.*Free disk space"):
    loop.train(small_experiment(steps=12), workdir)
  assert committed(workdir) == [4, 8] and snapshot(os.path.join(workdir, "checkpoints", "8")) == before
  monkeypatch.setattr(ocp.CheckpointManager, "save", original)
  _resume_bit_exact(workdir, runs)  # the disk was freed: the rerun resumes from 8
  fault_table.record("save raises OSError (disk full)", CLEAN)


def test_unwritable_workdir_is_a_clear_error(runs, tmp_path, fault_table):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  with pytest.raises(paths.StorageError, match="Cannot write the --workdir .*Choose a folder .* you can write to"):
    loop.train(small_experiment(steps=4), str(blocker / "run"))
  fault_table.record("workdir cannot be created", CLEAN)
  if os.geteuid() == 0:
    pytest.skip("running as root: a read-only folder (chmod 555) is still writable for root")
  workdir = _copy(runs, tmp_path)
  before = snapshot(workdir)
  os.chmod(workdir, 0o555)
  try:
    with pytest.raises(paths.StorageError, match="Cannot write the --workdir"):
      loop.train(small_experiment(steps=12), workdir)
  finally:
    os.chmod(workdir, 0o755)
  assert snapshot(workdir) == before
  fault_table.record("read-only workdir (chmod 555)", CLEAN)


@pytest.mark.parametrize(
  "changes, named",
  [
    ({"model.hidden": "(32,)"}, "model.hidden"),
    ({"data.name": "mnist", "train.batch_size": "32"}, "data.name"),
    ({"optim.learning_rate": "0.1", "train.seed": "3"}, "train.seed"),
  ],
)
def test_workdir_of_another_model_is_refused_naming_the_fields(runs, tmp_path, changes, named, fault_table):
  workdir = _copy(runs, tmp_path)
  before = snapshot(workdir)
  other = config_lib.apply_overrides(small_experiment(steps=12), changes)
  with pytest.raises(config_lib.ConfigError, match="different experiment") as error:
    loop.train(other, workdir)
  assert all(k in str(error.value) for k in changes) and named in str(error.value)
  assert snapshot(workdir) == before
  fault_table.record("workdir holds another model", CLEAN)


def test_a_checkpoint_of_another_structure_is_refused_never_set_aside(runs, tmp_path, fault_table):
  """Without config.json to compare with, train meets a checkpoint of other shapes: an error naming
  the arrays, never corruption (today's code moved both healthy checkpoints aside and trained
  from step 0)."""
  workdir = _copy(runs, tmp_path)
  os.remove(os.path.join(workdir, "config.json"))
  before = snapshot(workdir)
  other = config_lib.apply_overrides(small_experiment(steps=12), {"model.hidden": "(32,)"})
  with pytest.raises(ckpt_lib.CheckpointError, match=r"Checkpoint 8 .* holds other parameters.*params/.*\(64,\)"):
    loop.train(other, workdir)
  assert snapshot(workdir) == before
  fault_table.record("checkpoint of another structure (train)", CLEAN)


def test_unreadable_config_json_is_refused(runs, tmp_path, fault_table):
  workdir = _copy(runs, tmp_path)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write('{"family": "vae", "train": {"steps": "tw')
  with pytest.raises(config_lib.ConfigError, match="cannot be read"):
    loop.train(small_experiment(steps=12), workdir)
  assert committed(workdir) == [4, 8]
  fault_table.record("workdir with a damaged config.json", CLEAN)


@pytest.mark.parametrize("bad_step", [5, 9])
def test_nan_in_a_batch_stops_naming_step_and_metric(runs, tmp_path, monkeypatch, bad_step, fault_table):
  """The batch of step index `bad_step` holds a NaN pixel: the run stops at step bad_step + 1,
  names the metric, keeps the checkpoints written before it, and resumes bit-exactly once the
  data is fixed."""
  workdir = _copy(runs, tmp_path)
  for s in committed(workdir):
    if s > bad_step:  # start before the poisoned step, from the checkpoint at 4
      shutil.rmtree(os.path.join(workdir, "checkpoints", str(s)))
  real_load = data_lib.load

  def poisoned_load(cfg, split):
    dataset = real_load(cfg, split)
    real_batch = dataset.batch

    def batch(step, *args, **kwargs):
      out = real_batch(step, *args, **kwargs)
      if step == bad_step:
        out = dict(
          out,
          image=np.where(np.arange(out["image"].size).reshape(out["image"].shape) == 7, np.nan, out["image"]).astype(
            out["image"].dtype
          ),
        )
      return out

    dataset.batch = batch
    return dataset

  monkeypatch.setattr(loop.data_lib, "load", poisoned_load)
  with pytest.raises(
    loop.NonFiniteLoss, match=rf"Step {bad_step + 1}: .*loss = nan.*last good checkpoint \(step {bad_step}\)"
  ):
    loop.train(small_experiment(steps=12, checkpoint_every=1), workdir)
  _, _, state, _ = workdir_lib.restore(workdir)
  assert int(state.step) == bad_step and committed(workdir)[-1] == bad_step
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state.params)))
  monkeypatch.setattr(loop.data_lib, "load", real_load)
  loop.train(small_experiment(steps=12, checkpoint_every=1), workdir)
  assert losses(workdir) == runs["full"]
  fault_table.record("NaN injected into a batch", CLEAN)


# ----------------------------------------------------------------------------------------------
# Damaged checkpoints through the real commands: what a person's terminal shows
# ----------------------------------------------------------------------------------------------


def _command(tmp_path, module, *argv):
  """(exit status, everything the command printed) of `python -m module argv` on 8 CPU devices."""
  with group(tmp_path) as g:
    g.start([sys.executable, "-m", module, *argv], child_env(8))
    code = g.wait(TIMEOUT)[0]
    return code, g.output(100_000)


def _warnings(out):
  return [line for line in out.splitlines() if " WARNING " in line]


def _refused(code, out, *needles):
  """Exit status 2 and one paragraph, the command's last words, naming every needle."""
  assert code == 2 and "Traceback" not in out, out
  paragraph = out[out.index("error: ") :].strip()
  assert "\n\n" not in paragraph and "WARNING" not in paragraph and len(paragraph) < 1500, out
  squeezed = "".join(paragraph.split())  # the paragraph is wrapped, paths too (at their hyphens)
  for needle in needles:
    assert "".join(needle.split()) in squeezed, (needle, out)


def test_sample_reads_past_a_damaged_newest_checkpoint_and_moves_nothing(runs, tmp_path, fault_table):
  workdir = _copy(runs, tmp_path)
  _corrupt_delete_array_data(workdir)
  before = snapshot(workdir)
  out_file = str(tmp_path / "s.png")
  code, out = _command(tmp_path, "genjax.sample", "--workdir", workdir, "--num", "4", "--out", out_file)
  assert code == 0 and "Traceback" not in out and "wrote 4 samples of step 4" in out, out
  (warning,) = _warnings(out)  # one line: the step, why, and that nothing moved
  assert "Checkpoint 8" in warning and "Nothing was moved" in warning, out
  assert snapshot(workdir) == before  # read-only: checkpoints/ exactly as it was
  fault_table.record("newest checkpoint damaged (sample)", CLEAN)


def test_train_with_every_checkpoint_damaged_refuses_then_restarts_when_asked(runs, tmp_path, fault_table):
  workdir = _copy(runs, tmp_path)
  config = write_config(tmp_path / "exp.py", steps=4, checkpoint_every=4, eval_every=4)
  for step in (4, 8):
    _corrupt_delete_array_data(workdir, step)
  config_json, metrics = (open(os.path.join(workdir, f)).read() for f in ("config.json", "metrics.jsonl"))
  code, out = _command(tmp_path, "genjax.train", "--config", config, "--workdir", workdir)
  _refused(code, out, "No readable checkpoint", f"{workdir}/checkpoints_corrupt/", "--restart_from_scratch")
  assert len(_warnings(out)) == 2 and all("moved to" in w for w in _warnings(out)), out  # one line each
  assert committed(workdir) == [] and quarantined(workdir) == [4, 8]  # kept, never deleted
  assert open(os.path.join(workdir, "config.json")).read() == config_json  # nothing trained or rewritten
  assert open(os.path.join(workdir, "metrics.jsonl")).read() == metrics
  fault_table.record("every checkpoint damaged (train)", CLEAN)

  code, out = _command(tmp_path, "genjax.train", "--config", config, "--workdir", workdir, "--restart_from_scratch")
  assert code == 0 and "Traceback" not in out, out
  assert f"starting from step 0; 2 unreadable checkpoint(s) kept in {workdir}/checkpoints_corrupt" in out, out
  assert quarantined(workdir) == [4, 8] and committed(workdir) == [4]
  assert losses(workdir) == {s: runs["full"][s] for s in range(1, 5)}  # a fresh run, its own metrics.jsonl
  fault_table.record("all damaged, train --restart_from_scratch", RESTARTED)


def test_train_with_the_newest_checkpoint_damaged_warns_once_and_resumes(runs, tmp_path, fault_table):
  workdir = _copy(runs, tmp_path)
  config = write_config(tmp_path / "exp.py", steps=12, checkpoint_every=4, eval_every=6)
  _corrupt_delete_array_data(workdir)
  code, out = _command(tmp_path, "genjax.train", "--config", config, "--workdir", workdir)
  assert code == 0 and "Traceback" not in out and "Resumed from step 4" in out, out
  (warning,) = _warnings(out)
  assert "Checkpoint 8" in warning and f"moved to {workdir}/checkpoints_corrupt/8-" in warning, out
  assert quarantined(workdir) == [8] and committed(workdir) == [4, 8, 12]
  assert losses(workdir) == runs["full"]
  fault_table.record("newest checkpoint damaged (train)", RESUMED)


def test_reports_of_abandoned_checkpoint_reads_are_dropped_and_nothing_else():
  """asyncio's "Task exception was never retrieved" after a failed restore, in the two forms CI
  printed: the task runs an orbax coroutine, or it wraps a tensorstore future (only the error's
  tensorstore_spec says so; this form once slipped through and failed the test above). Any
  other unretrieved task, and any other asyncio record, is still reported."""
  import logging

  def record(message, exc=None):
    info = (type(exc), exc, None) if exc else None
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, info)

  store = 'NOT_FOUND: Error reading "opt_state.0.nu/.zarray" [tensorstore_spec=\'{"driver":"zarr"}\']'
  orbax_task = "Task exception was never retrieved\nfuture: <Task finished coro=<read() defined at orbax/x.py:1>>"
  wrapped = "Task exception was never retrieved\nfuture: <Task finished coro=<_wrap_awaitable() done>"
  keep = ckpt_lib._abandoned_orbax_task
  assert not keep(record(orbax_task, ValueError("boom")))
  assert not keep(record(wrapped + f" exception=ValueError({store!r})>", ValueError(store)))
  assert not keep(record(wrapped + ">", ValueError(store)))  # the spec only in the exception
  assert keep(record(wrapped + " exception=ValueError('boom')>", ValueError("boom")))
  assert keep(record("Executing <Task ...> took 1.2 seconds"))


def test_corrupted_mnist_file_names_the_file_and_the_fix(tmp_path, fault_table):
  """The prepare command (a process of its own: it loads TensorFlow) names the damaged file."""
  from genjax.data import tfds_io

  source = os.environ.get("GENJAX_MANUAL_DIR")
  if not source or not os.path.isdir(os.path.join(source, "mnist")):
    pytest.skip("needs the raw MNIST files: set GENJAX_MANUAL_DIR to the folder holding mnist/")
  if not tfds_io.tensorflow_available():
    pytest.skip("preparing needs TensorFlow")
  manual = tmp_path / "manual" / "mnist"
  shutil.copytree(os.path.join(source, "mnist"), manual)
  victim = manual / "train-labels-idx1-ubyte.gz"
  data = bytearray(victim.read_bytes())
  data[100] ^= 0xFF
  victim.write_bytes(bytes(data))
  env = {k: v for k, v in child_env(1).items() if k != "GENJAX_MANUAL_DIR"}
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "genjax.data.prepare",
      "--datasets",
      "mnist",
      "--manual_dir",
      str(tmp_path / "manual"),
      "--data_dir",
      str(tmp_path / "tfds"),
    ],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  code, err = result.returncode, result.stderr
  flat = " ".join(err.split())  # the paragraph is wrapped: a phrase may span lines
  assert code == 1 and "train-labels-idx1-ubyte.gz" in flat and "python -m genjax.data.prepare" in flat, err
  assert "Traceback" not in err
  assert victim.read_bytes() == bytes(data)  # the file is reported, not deleted or replaced
  fault_table.record("dataset file with a wrong checksum", CLEAN)
