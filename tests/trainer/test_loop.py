"""The shared loop: parallel modes agree, runs resume bit-exactly, bad states fail cleanly."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
import types

import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.trainer import loop
from genjax.trainer import workdir as workdir_lib
from tests.trainer.helpers import losses, small_experiment, write_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def final_params(workdir):
  _, _, state, _ = workdir_lib.restore(workdir)
  return jax.device_get(state.params)


def test_one_device_jit_mesh_and_pmap_agree(tmp_path):
  assert jax.device_count() == 8, "tests/conftest.py should give 8 simulated devices"
  runs = {"one": dict(mode="jit", num_devices=1), "mesh": dict(mode="jit"), "pmap": dict(mode="pmap")}
  params, logged = {}, {}
  for name, parallel in runs.items():
    workdir = str(tmp_path / name)
    loop.train(small_experiment(steps=8, checkpoint_every=8, eval_every=8, **parallel), workdir)
    params[name], logged[name] = final_params(workdir), losses(workdir)
  for name in ("mesh", "pmap"):
    np.testing.assert_allclose(list(logged[name].values()), list(logged["one"].values()), rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), params[name], params["one"])
  assert logged["one"][1] != logged["one"][8]  # the runs really trained


def test_outputs_a_person_sees(tmp_path, caplog):
  workdir = str(tmp_path / "run")
  with caplog.at_level(logging.INFO, logger="genjax"):
    summary = loop.train(small_experiment(steps=12, checkpoint_every=4, eval_every=6), workdir)
  assert summary["step"] == 12 and summary["started_at"] == 0 and summary["output"] == "image"
  # compilation is its own phase, timed before the first step (and before the progress bar starts)
  compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiled the train step in")]
  assert len(compiled) == 1 and 0 < summary["compile_s"] <= summary["seconds"]
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in records if "loss" in r] == list(range(1, 13))
  assert [r["step"] for r in records if any(k.startswith("eval_") for k in r)] == [6, 12]
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["train"]["steps"] == 12 and saved["family"] == "vae"
  samples = os.listdir(os.path.join(workdir, "samples"))
  assert {"step_00000006.png", "step_00000012.png"} <= set(samples)
  try:
    import matplotlib  # noqa: F401 - the loss-curve picture needs it
  except ImportError:
    assert "loss_curve.png" not in samples
  else:
    assert "loss_curve.png" in samples
  assert any(f.startswith("events") for f in os.listdir(os.path.join(workdir, "tensorboard")))
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()) == [4, 8, 12]


def test_steps_per_sec_leaves_out_evaluation_and_checkpoints(tmp_path, monkeypatch):
  """Every evaluation and checkpoint made 1000 s slow on the loop's clock (a sleep that costs no
  time): no logged window's steps_per_sec counts them, where the windows after them read ~0.001."""
  offset = [0.0]
  monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + offset[0]))
  for name in ("evaluate", "save"):
    real = getattr(loop._Run, name)

    def slow(self, *args, real=real, **kwargs):
      offset[0] += 1000.0
      return real(self, *args, **kwargs)

    monkeypatch.setattr(loop._Run, name, slow)
  workdir = str(tmp_path / "run")
  loop.train(small_experiment(steps=6, checkpoint_every=2, eval_every=3), workdir)
  records = map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))
  rates = {r["step"]: r["steps_per_sec"] for r in records if "steps_per_sec" in r}
  assert offset[0] == 5 * 1000.0 and sorted(rates) == [1, 2, 3, 4, 5, 6]  # checkpoints 2, 4, 6; evaluations 3, 6
  assert min(rates.values()) > 0.1, rates  # each window under 10 s of training, not 1000 s


def test_resume_in_process_is_bit_exact(tmp_path):
  full, part = str(tmp_path / "full"), str(tmp_path / "part")
  loop.train(small_experiment(steps=12), full)
  loop.train(small_experiment(steps=8), part)  # stops at 8 (checkpointed)
  loop.train(small_experiment(steps=12), part)  # resumes from 8
  assert losses(part) == losses(full)


def test_corrupt_latest_checkpoint_falls_back(tmp_path, caplog):
  full, run = str(tmp_path / "full"), str(tmp_path / "run")
  loop.train(small_experiment(steps=12), full)
  loop.train(small_experiment(steps=8), run)
  # truncate every file of the latest checkpoint's state
  latest = os.path.join(run, "checkpoints", "8", "state")
  truncated = 0
  for folder, _, files in os.walk(latest):
    for f in files:
      with open(os.path.join(folder, f), "r+b") as fh:
        fh.truncate(max(0, os.path.getsize(os.path.join(folder, f)) // 3))
        truncated += 1
  assert truncated
  with caplog.at_level("WARNING", logger="genjax"):
    loop.train(small_experiment(steps=12), run)
  assert "cannot be read" in caplog.text
  assert os.listdir(os.path.join(run, "checkpoints_corrupt"))  # kept, not deleted
  assert losses(run) == losses(full)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / "nan")
  with pytest.raises(loop.NonFiniteLoss, match=r"Step \d+: .* is not finite.*last good checkpoint"):
    loop.train(small_experiment(steps=200, checkpoint_every=1, eval_every=1000, learning_rate=1e12), workdir)
  _, _, state, _ = workdir_lib.restore(workdir)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state.params)))


def test_workdir_of_another_experiment_is_refused(tmp_path):
  workdir = str(tmp_path / "run")
  loop.train(small_experiment(steps=4, checkpoint_every=4, eval_every=4), workdir)
  other = small_experiment(steps=4, checkpoint_every=4, eval_every=4)
  other = config_lib.apply_overrides(other, {"model.latents": "16", "optim.learning_rate": "0.1"})
  with pytest.raises(config_lib.ConfigError, match=r"different experiment.*model.latents.*optim.learning_rate"):
    loop.train(other, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4"]  # nothing lost


def _train_command(config, workdir):
  return [sys.executable, "-m", "genjax.train", "--config", config, "--workdir", workdir]


def test_cli_errors_are_one_paragraph(tmp_path):
  env = {**os.environ, "PYTHONPATH": REPO}
  config = write_config(tmp_path / "exp.py", steps=4)
  bad = subprocess.run(
    _train_command(config, str(tmp_path / "w")) + ["--config.train.stpes=3"],
    env=env,
    capture_output=True,
    text=True,
    cwd=REPO,
  )
  assert bad.returncode == 2
  assert "Did you mean steps" in bad.stderr and "Traceback" not in bad.stderr
  bad = subprocess.run(
    _train_command(config, str(tmp_path / "w")) + ["--config.train.batch_size=12", "--cpu_devices=8"],
    env=env,
    capture_output=True,
    text=True,
    cwd=REPO,
  )
  assert bad.returncode == 2 and "does not divide over 8 devices" in bad.stderr and "Traceback" not in bad.stderr


def test_config_cpu_devices_splits_the_cpu_and_the_flag_wins(tmp_path):
  """config.parallel.cpu_devices sets how many devices `genjax.train` makes of the CPU (the test
  process's 8 are inherited through XLA_FLAGS and replaced); --cpu_devices overrides it."""
  env = {**os.environ, "PYTHONPATH": REPO}
  config = write_config(tmp_path / "exp.py", steps=2, checkpoint_every=2, eval_every=2)

  def run(workdir, *extra):
    done = subprocess.run(
      _train_command(config, str(tmp_path / workdir)) + list(extra), env=env, capture_output=True, text=True, cwd=REPO
    )
    return done.returncode, done.stdout, done.stderr

  code, out, err = run("two", "--config.parallel.cpu_devices=2")
  assert code == 0, err[-2000:]
  assert json.loads(out.strip().splitlines()[-1])["devices"] == 2
  # the human summary on stderr: what was trained, where the samples are, what to run next
  workdir = str(tmp_path / "two")
  assert "from step 0 to 2 in" in err and "on 2 device(s)" in err
  assert f"samples:     {os.path.join(workdir, 'samples', 'step_00000002.png')}" in err
  assert f"next:        python -m genjax.sample --workdir {workdir} --num 16 --out samples.png" in err
  code, out, err = run("two", "--config.parallel.cpu_devices=2")  # nothing left to train
  assert code == 0 and f"{workdir} is already at step 2" in err and "Raise --config.train.steps" in err
  code, out, err = run("one", "--config.parallel.cpu_devices=2", "--cpu_devices=1")
  assert code == 0, err[-2000:]
  assert json.loads(out.strip().splitlines()[-1])["devices"] == 1
  code, out, err = run("bad", "--config.parallel.cpu_devices=0")
  assert code == 2 and "config.parallel.cpu_devices = 0" in " ".join(err.split()) and "Traceback" not in err
  assert not os.path.exists(tmp_path / "bad")


SLOW_STEP_RUN = """
import sys, time
import jax
sys.path.insert(0, {repo!r})
from genjax import families
from genjax.trainer import loop
from tests.trainer.helpers import small_experiment

build = families.build

def tick():
  time.sleep({seconds})
  with open({marker!r}, "a") as f:
    f.write(".")

def slow_build(exp, info, batch_splits=1):  # every step takes {seconds} s more on the device's side, like a big model
  family = build(exp, info, batch_splits)
  def train_step(state, batch, rng):
    jax.debug.callback(tick)
    return family.train_step(state, batch, rng)
  return family.__class__(**{{**family.__dict__, "train_step": train_step}})

families.build = slow_build
exp = small_experiment(steps=100, checkpoint_every=100, eval_every=100)
exp = exp.__class__(**{{**exp.__dict__, "train": exp.train.__class__(**{{**exp.train.__dict__, "log_every": 50}})}})
try:
  loop.train(exp, {workdir!r})
except loop.Preempted as e:
  print("preempted_at", time.time(), flush=True)
  sys.exit(loop.PREEMPTED_EXIT_CODE)
"""


@pytest.mark.slow
def test_sigterm_is_answered_within_about_two_step_times(tmp_path):
  """Steps of 1 s, logged only every 50: the loop still lets at most one call run ahead, so a
  SIGTERM is answered with a checkpoint and exit 75 in about two step times, not after the 50
  steps an unbounded queue would have dispatched."""
  seconds, workdir, marker = 1.0, str(tmp_path / "run"), str(tmp_path / "steps_done")
  script = SLOW_STEP_RUN.format(repo=REPO, seconds=seconds, workdir=workdir, marker=marker)
  proc = subprocess.Popen(
    [sys.executable, "-c", script],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env={**os.environ, "PYTHONPATH": REPO},
  )
  checkpoints = os.path.join(workdir, "checkpoints")
  started = time.time()
  done = 0
  while time.time() - started < 240 and proc.poll() is None:  # until 5 steps have run
    done = len(open(marker).read()) if os.path.exists(marker) else 0
    if done >= 5:
      break
    time.sleep(0.1)
  sent = time.time()
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  exited = time.time() - sent
  assert proc.returncode == loop.PREEMPTED_EXIT_CODE, err[-2000:]
  answered = float(out.split("preempted_at")[1].split()[0]) - sent  # the checkpoint is written by then
  saved = [int(s) for s in os.listdir(checkpoints) if s.isdigit()]
  print(
    f"SIGTERM answered (checkpoint written) in {answered:.2f} s, process ended after {exited:.2f} s, "
    f"with {seconds} s steps; {done} steps done when it was sent, stopped at step {max(saved or [0])}"
  )
  # Counted in steps, not seconds (the machine may be loaded): when the signal came, `done` steps
  # had finished, one was running and at most one more was queued; one step of slack for a step
  # that finished between reading the count and sending. An unbounded queue would reach step 50.
  assert saved and 5 <= max(saved) <= done + 3, (saved, done)
  assert exited < answered + 30  # and the process ended soon after


def test_profile_steps_write_a_trace(tmp_path):
  workdir = str(tmp_path / "run")
  exp = config_lib.apply_overrides(
    small_experiment(steps=4, checkpoint_every=4, eval_every=4), {"train.profile_steps": "1,3"}
  )
  loop.train(exp, workdir)
  traces = [
    os.path.join(d, f) for d, _, fs in os.walk(os.path.join(workdir, "profile")) for f in fs if f.endswith(".xplane.pb")
  ]
  assert traces and os.path.getsize(traces[0]) > 0
  with pytest.raises(config_lib.ConfigError, match="profile_steps"):
    loop.train(config_lib.apply_overrides(exp, {"train.profile_steps": "3,1"}), str(tmp_path / "bad"))
