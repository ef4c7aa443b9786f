"""The persistent compilation cache (genjax.compile_cache): where it goes, that a run reads its
programs back, that the numbers are the same with it and without, and that a damaged or
unwritable cache never fails a run."""

import glob
import json
import os
import subprocess
import sys

import jax
import pytest

from genjax import compile_cache
from tests.reliability.procs import REPO, child_env

SHORT = [
  "--config.train.steps=60",
  "--config.train.log_every=20",
  "--config.train.eval_every=60",
  "--config.train.checkpoint_every=60",
  "--config.train.progress=false",
  "--config.optim.warmup_steps=10",
]


def _env(**extra):
  """One CPU device, and no cache folder but the one the run chooses itself."""
  env = {k: v for k, v in child_env(1).items() if k not in ("JAX_COMPILATION_CACHE_DIR", compile_cache.ENV_SWITCH)}
  return {**env, "JAX_LOG_COMPILES": "1", **extra}


def _train(workdir, env, *flags):
  done = subprocess.run(
    [sys.executable, "-m", "genjax.train", "--workdir", str(workdir), *SHORT, *flags],
    env=env,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stderr


def _numbers(workdir):
  """Every logged metric but the step rate, and the bytes of every sample grid."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [{k: v for k, v in json.loads(line).items() if k != "steps_per_sec"} for line in f]
  pictures = {}
  for path in sorted(glob.glob(os.path.join(workdir, "samples", "*.png"))):
    with open(path, "rb") as f:
      pictures[os.path.basename(path)] = f.read()
  return records, pictures


def _entries(folder):
  return sorted(p for p in glob.glob(os.path.join(folder, "*")) if not os.path.basename(p).startswith("."))


@pytest.mark.slow
def test_a_second_run_reads_its_programs_back_and_every_run_computes_the_same_numbers(tmp_path):
  home, cache = tmp_path / "home", tmp_path / "home" / "compilation_cache"
  env = _env(GENJAX_HOME=str(home))
  uncached = _train(tmp_path / "off", env, "--no_compilation_cache")
  assert not cache.exists(), "--no_compilation_cache wrote a cache"
  assert "Persistent compilation cache hit" not in uncached

  _train(tmp_path / "cold", env)
  written = _entries(cache)
  assert written, "the default run (cache in $GENJAX_HOME/compilation_cache) wrote nothing"

  warm = _train(tmp_path / "warm", env)
  assert "Persistent compilation cache hit for 'jit(train_step)'" in warm or (
    "Persistent compilation cache hit for 'jit_train_step'" in warm
  ), warm[-3000:]

  # Damaged entries: JAX warns, compiles again, and the run is unharmed.
  for path in _entries(cache):
    with open(path, "wb") as f:
      f.write(b"not an executable")
  damaged = _train(tmp_path / "damaged", env)
  assert "Persistent compilation cache hit for 'jit(train_step)'" not in damaged

  expected = _numbers(tmp_path / "off")
  assert expected[0] and expected[1], "the run logged no metrics or drew no samples"
  for name in ("cold", "warm", "damaged"):
    assert _numbers(tmp_path / name) == expected, f"the {name} run's losses or samples differ from the uncached run's"


@pytest.fixture
def restore_jax_cache_config():
  keys = ("jax_enable_compilation_cache", "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  saved = {k: getattr(jax.config, k) for k in keys}
  yield
  for k, v in saved.items():
    jax.config.update(k, v)


def test_the_folder_follows_jax_then_genjax_then_the_default(monkeypatch, tmp_path, restore_jax_cache_config):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.delenv(compile_cache.ENV_SWITCH, raising=False)
  jax.config.update("jax_compilation_cache_dir", None)
  monkeypatch.setenv("GENJAX_HOME", str(tmp_path / "home"))
  assert compile_cache.chosen_dir() == str(tmp_path / "home" / "compilation_cache")
  monkeypatch.setenv("GENJAX_HOME", "gs://bucket/home")  # the cache stays on the local disk
  assert not compile_cache.chosen_dir().startswith("gs://")
  monkeypatch.setenv(compile_cache.ENV_SWITCH, str(tmp_path / "mine"))
  assert compile_cache.chosen_dir() == str(tmp_path / "mine")
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax's"))
  assert compile_cache.chosen_dir() == str(tmp_path / "jax's")  # JAX's own variable wins
  assert compile_cache.chosen_dir(enabled=False) is None
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
  for off in ("0", "off", "False"):
    monkeypatch.setenv(compile_cache.ENV_SWITCH, off)
    assert compile_cache.chosen_dir() is None


def test_an_unwritable_folder_is_one_warning_and_no_cache(monkeypatch, tmp_path, restore_jax_cache_config, caplog):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  jax.config.update("jax_compilation_cache_dir", None)
  blocker = tmp_path / "a_file"
  blocker.write_text("a file where the cache folder would go")
  monkeypatch.setenv(compile_cache.ENV_SWITCH, str(blocker / "cache"))
  with caplog.at_level("WARNING", logger="genjax"):
    assert compile_cache.configure() is None
  assert not jax.config.jax_enable_compilation_cache
  [record] = [r for r in caplog.records if "cannot be written" in r.getMessage()]
  assert str(blocker / "cache") in record.getMessage() and "--no_compilation_cache" in record.getMessage()
  assert float(jax.jit(lambda x: x + 1)(1.0)) == 2.0  # and JAX still compiles

  monkeypatch.setenv(compile_cache.ENV_SWITCH, str(tmp_path / "ok"))
  assert compile_cache.configure() == str(tmp_path / "ok")
  assert jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir == str(tmp_path / "ok")
  assert jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.MIN_COMPILE_SECONDS
