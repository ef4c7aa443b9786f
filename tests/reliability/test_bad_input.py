"""Bad input on every command-line entry point: one short error paragraph and a non-zero exit,
never a traceback. Most cases call `main(argv)` in this process (cheap); a few run the real
command to see what a person's terminal shows."""

import os
import subprocess
import sys

import pytest

from tests.reliability.procs import REPO, child_env
from tests.trainer.helpers import write_config


def _entry(name):
  if name == "train":
    from genjax.train import main
  elif name == "sample":
    from genjax.sample import main
  elif name == "evaluate":
    from genjax.evaluate import main
  elif name == "prepare":
    from genjax.data.prepare import main
  elif name == "profile":
    from genjax.profile import main
  elif name == "reproduce":
    from genjax.reproduce import main
  else:
    bench = pytest.importorskip("genjax.bench")
    main = bench.main
  return main


def _fails_cleanly(name, argv, capsys, monkeypatch, *needles):
  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # --cpu_devices edits it: restore after
  try:
    code = _entry(name)(argv)
  except SystemExit as stop:
    code = stop.code
  err = capsys.readouterr().err
  assert code not in (0, None), f"{name} {argv} exited with {code}"
  low = err.lower()
  assert "Traceback" not in err and ("error" in low or "failed" in low), err
  flat = " ".join(err.split())  # the paragraph is wrapped to the terminal: a phrase may span lines
  for needle in needles:
    assert " ".join(needle.split()) in flat, (needle, err)
  message = err[min(i for i in (low.find("error"), low.find("failed")) if i >= 0) :]
  assert "\n\n" not in message.strip() and len(message) < 3000, err  # one block, no walls of text
  return err


@pytest.fixture
def cfg(tmp_path):
  return write_config(tmp_path / "exp.py", steps=4, checkpoint_every=4, eval_every=4)


TRAIN_CASES = {
  "unknown flag": (["--stpes=3"], "Unknown arguments"),
  "unknown config field": (["--config.train.stpes=3"], "steps"),
  "wrong type": (["--config.train.steps=many"], "train.steps"),
  "empty value": (["--config.train.steps="], "train.steps"),
  "negative steps": (["--config.train.steps=-5"], "train.steps"),
  "zero batch": (["--config.train.batch_size=0"], "batch_size"),
  "negative learning rate": (["--config.optim.learning_rate=-1"], "learning_rate"),
  "missing config file": (["--config", "experiments/no_such_experiment.py"], "does not exist"),
  "config not python": (["--config", "README.md"], "Python file"),
  "cpu devices not a number": (["--cpu_devices=lots"], "--cpu_devices"),
  "zero cpu devices": (["--cpu_devices=0"], "--cpu_devices"),
  "half of the multi-process flags": (["--num_processes=2"], "all three"),
  "process id out of range": (
    ["--coordinator_address=127.0.0.1:1234", "--num_processes=2", "--process_id=2"],
    "--process_id",
  ),
  "coordinator without port": (["--coordinator_address=localhost", "--num_processes=2", "--process_id=0"], "HOST:PORT"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_bad_input(case, cfg, tmp_path, capsys, monkeypatch):
  argv, needle = TRAIN_CASES[case]
  if "--config" not in argv:
    argv = ["--config", cfg, "--workdir", str(tmp_path / "w"), *argv]
  _fails_cleanly("train", argv, capsys, monkeypatch, needle)
  assert not os.path.exists(tmp_path / "w" / "checkpoints")  # refused before anything was written


def test_train_workdir_that_is_a_file(cfg, tmp_path, capsys, monkeypatch):
  (tmp_path / "f").write_text("")
  _fails_cleanly(
    "train",
    ["--config", cfg, "--workdir", str(tmp_path / "f" / "run")],
    capsys,
    monkeypatch,
    "Cannot write the --workdir",
  )


def test_sample_bad_input(tmp_path, capsys, monkeypatch):
  missing = str(tmp_path / "nothing")
  out = str(tmp_path / "s.png")
  (tmp_path / "empty").mkdir()
  cases = [
    ([], "--workdir"),
    (["--workdir", missing, "--out", out], "does not exist"),
    (["--workdir", str(tmp_path / "empty"), "--out", out], "config.json"),
    (["--workdir", missing, "--out", out, "--num=0"], "--num"),
    (["--workdir", missing, "--out", out, "--num=few"], "--num"),
    # Sampling options belong to the run's family, so the workdir is read (and reported) first.
    (["--workdir", missing, "--out", out, "--temperature=hot"], "does not exist"),
    (["--workdir", missing, "--out", out, "--bogus"], "does not exist"),
    (["--workdir", missing, "--out", str(tmp_path / "no" / "dir" / "s.png")], "does not exist"),
    (["--workdir", missing, "--out", str(tmp_path / "s.jpeg")], ".png"),
  ]
  for argv, needle in cases:
    _fails_cleanly("sample", argv, capsys, monkeypatch, needle)


def test_evaluate_bad_input(tmp_path, capsys, monkeypatch):
  (tmp_path / "empty").mkdir()
  empty = str(tmp_path / "empty")
  cases = [
    ([], "--workdir"),
    (["--workdir", str(tmp_path / "nothing")], "does not exist"),
    (["--workdir", empty], "config.json"),
    (["--workdir", empty, "--metrics=fdi"], "Unknown metric"),
    (["--workdir", empty, "--metrics=,"], "empty"),
    (["--workdir", empty, "--num_samples=1"], "--num_samples"),
    (["--workdir", empty, "--num_samples=x"], "--num_samples"),
    (["--workdir", empty, "--cpu_devices=-2"], "--cpu_devices"),
  ]
  for argv, needle in cases:
    _fails_cleanly("evaluate", argv, capsys, monkeypatch, needle)


def test_prepare_bad_input(tmp_path, capsys, monkeypatch):
  monkeypatch.delenv("GENJAX_MANUAL_DIR", raising=False)
  _fails_cleanly("prepare", [], capsys, monkeypatch, "--datasets")
  _fails_cleanly("prepare", ["--datasets=mnistt"], capsys, monkeypatch, "mnistt")
  from genjax.data import tfds_io

  if tfds_io.tensorflow_available():  # raw files missing: say which and where
    (tmp_path / "manual").mkdir()
    _fails_cleanly(
      "prepare",
      ["--datasets=mnist", "--manual_dir", str(tmp_path / "manual"), "--data_dir", str(tmp_path / "tfds")],
      capsys,
      monkeypatch,
      "mnist",
    )


def test_bench_bad_input(capsys, monkeypatch):
  _fails_cleanly("bench", ["--only=nope"], capsys, monkeypatch, "nope")
  _fails_cleanly("bench", ["--frobnicate"], capsys, monkeypatch, "--frobnicate")


@pytest.mark.slow
@pytest.mark.parametrize(
  "module, argv",
  [
    ("genjax.train", ["--config.train.steps=many"]),
    ("genjax.sample", ["--workdir", "no_such_run", "--out", "x.png"]),
    ("genjax.evaluate", ["--workdir", "no_such_run"]),
    ("genjax.data.prepare", ["--datasets=nope"]),
    ("genjax.bench", ["--only=nope"]),
  ],
)
def test_real_commands_print_no_traceback(module, argv):
  done = subprocess.run(
    [sys.executable, "-m", module, *argv], env=child_env(1), cwd=REPO, capture_output=True, text=True, timeout=180
  )
  assert done.returncode not in (0, None) and "Traceback" not in done.stderr and "error" in done.stderr, done.stderr
