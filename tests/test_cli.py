"""Command-line plumbing: the XLA flags of simulated devices."""

import os
import signal
import subprocess
import sys

import pytest

from genjax.cli import simulated_devices_xla_flags
from tests.reliability.procs import child_env


def test_simulated_device_flags_replace_the_count_and_keep_the_users_timeouts():
  flags = simulated_devices_xla_flags(
    4, "--xla_force_host_platform_device_count=8 --xla_dump_to=/x --xla_cpu_collective_call_terminate_timeout_seconds=5"
  ).split()
  assert [f for f in flags if "device_count" in f] == ["--xla_force_host_platform_device_count=4"]
  assert "--xla_dump_to=/x" in flags
  assert [f for f in flags if "terminate_timeout" in f] == ["--xla_cpu_collective_call_terminate_timeout_seconds=5"]
  assert "--xla_cpu_collective_call_warn_stuck_timeout_seconds=300" in flags
  fresh = simulated_devices_xla_flags(2).split()
  assert "--xla_cpu_collective_call_terminate_timeout_seconds=1800" in fresh


# Device 0 reaches the all-reduce 4 s after device 1.
_STRAGGLER = """
import time
import jax, jax.numpy as jnp, numpy as np

def pause(i):
  if int(i) == 0:
    time.sleep(4)
  return np.float32(0)

def step(x):
  i = jax.lax.axis_index("d")
  return jax.lax.psum(x + jax.pure_callback(pause, jax.ShapeDtypeStruct((), jnp.float32), i), "d")

print("sum", float(jax.pmap(step, axis_name="d")(jnp.arange(2.0))[0]))
"""


def _run_straggler(xla_flags):
  env = {**child_env(2), "XLA_FLAGS": xla_flags}
  return subprocess.run([sys.executable, "-c", _STRAGGLER], env=env, capture_output=True, text=True, timeout=300)


def test_the_collective_timeout_flags_decide_whether_xla_aborts_a_straggler():
  """The flags this jaxlib reads: with a 2 s limit XLA kills the process (SIGABRT); with the
  simulated-device defaults the same program waits for the straggler and finishes."""
  short = _run_straggler(
    simulated_devices_xla_flags(
      2, "--xla_cpu_collective_call_warn_stuck_timeout_seconds=1 --xla_cpu_collective_call_terminate_timeout_seconds=2"
    )
  )
  assert short.returncode == -signal.SIGABRT, short.stderr[-2000:]
  assert "Termination timeout" in short.stderr
  waited = _run_straggler(simulated_devices_xla_flags(2))
  assert waited.returncode == 0, waited.stderr[-2000:]
  assert "sum 1.0" in waited.stdout


def test_a_users_error_is_one_paragraph_and_a_bug_stays_a_traceback(tmp_path, monkeypatch, capsys):
  """`genjax.sample` prints a UserError (here a workdir without checkpoints) as one paragraph with
  exit code 2, and lets any other exception (a bug) out unchanged, traceback and all."""
  import pytest

  from genjax import errors, sample
  from genjax.trainer import workdir

  argv = ["--workdir", str(tmp_path), "--out", str(tmp_path / "s.png"), "--no_compilation_cache"]

  def no_checkpoint(path):
    raise errors.CheckpointError("No readable checkpoint in this workdir.")

  monkeypatch.setattr(workdir, "load", no_checkpoint)
  with pytest.raises(SystemExit) as exit_info:
    sample.main(argv)
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == "error: No readable checkpoint in this workdir.\n"

  def bug(path):
    raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

  monkeypatch.setattr(workdir, "load", bug)
  with pytest.raises(TypeError, match="unsupported operand"):
    sample.main(argv)
  assert issubclass(errors.ConfigError, ValueError) and issubclass(errors.MissingError, FileNotFoundError)


def test_cpu_tuning_flags_are_added_once_only_for_the_measured_jaxlib(monkeypatch):
  from importlib import metadata

  from genjax import cli

  monkeypatch.delenv(cli.CPU_TUNING_SWITCH, raising=False)
  monkeypatch.setattr(metadata, "version", lambda name: "0.10.2")
  (flag,) = cli.CPU_TUNING["0.10.2"]
  tuned = cli.cpu_tuned_xla_flags("--xla_force_host_platform_device_count=2")
  assert tuned.split() == ["--xla_force_host_platform_device_count=2", flag]
  assert cli.cpu_tuned_xla_flags(tuned) == tuned  # applied twice: once
  mine = flag.split("=")[0] + "=dot"
  assert cli.cpu_tuned_xla_flags(mine) == mine  # the user's own setting wins
  monkeypatch.setattr(metadata, "version", lambda name: "0.12.0")
  assert cli.cpu_tuned_xla_flags("") == ""  # a jaxlib that was not measured (the flag may be unknown)
  monkeypatch.setattr(metadata, "version", lambda name: "0.10.2")
  monkeypatch.setenv(cli.CPU_TUNING_SWITCH, "off")
  assert cli.cpu_tuned_xla_flags("") == ""


def test_the_unrolled_threefry_only_for_the_measured_jaxlib(monkeypatch):
  from importlib import metadata

  from genjax import cli

  monkeypatch.delenv(cli.CPU_TUNING_SWITCH, raising=False)
  monkeypatch.delenv(cli.UNROLLED_THREEFRY_SWITCH, raising=False)  # the tests' own setting (conftest)
  monkeypatch.setattr(metadata, "version", lambda name: "0.10.2")
  assert cli.unrolled_threefry_wanted()
  monkeypatch.setenv(cli.UNROLLED_THREEFRY_SWITCH, "off")
  assert not cli.unrolled_threefry_wanted() and cli.cpu_tuned_xla_flags("")  # the flags stay
  monkeypatch.delenv(cli.UNROLLED_THREEFRY_SWITCH)
  monkeypatch.setattr(metadata, "version", lambda name: "0.12.0.1")  # XLA compiled a GPT step for minutes
  assert not cli.unrolled_threefry_wanted()
  monkeypatch.setattr(metadata, "version", lambda name: "0.10.2")
  monkeypatch.setenv(cli.CPU_TUNING_SWITCH, "off")
  assert not cli.unrolled_threefry_wanted()


_REFAULTS = """
import ctypes, resource, sys
from genjax import cli
tuned = cli.tune_malloc()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 256 << 20
faults = []
for _ in range(4):  # a compiled call's temporary buffer: allocated, written, freed, at every step
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  p = libc.malloc(size)
  ctypes.memset(p, 1, size)
  libc.free(p)
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(tuned, max(faults[1:]))
"""


def test_malloc_tuning_keeps_a_freed_buffer_mapped_only_when_asked_and_only_on_the_cpu():
  """$GENJAX_MALLOC_TUNING=on: a 256 MB buffer freed and allocated again is not faulted in again
  (glibc's default maps it afresh each time: 65,536 pages of 4 KiB); off by default, and never
  where JAX would run on an accelerator."""
  if not sys.platform.startswith("linux"):
    pytest.skip("glibc's mallopt: Linux only")

  def run(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("GENJAX_MALLOC_TUNING", "JAX_PLATFORMS")}
    out = subprocess.run([sys.executable, "-c", _REFAULTS], env={**base, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    tuned, faults = out.stdout.split()
    return tuned == "True", int(faults)

  tuned, faults = run(GENJAX_MALLOC_TUNING="on", GENJAX_MALLOC_HEAP_CAP_MB="4096")
  assert tuned and faults < 1000, faults
  tuned, faults = run()
  assert not tuned and faults > 30000, faults
  tuned, faults = run(GENJAX_MALLOC_TUNING="on", JAX_PLATFORMS="cuda")
  assert not tuned and faults > 30000, faults


_CAPPED = """
import ctypes, resource, time
from genjax import cli
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss_mb():
  return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() >> 20
def cycle(size=256 << 20):  # allocate, write, free; returns the minor page faults it took
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  p = libc.malloc(size)
  ctypes.memset(p, 1, size)
  libc.free(p)
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
tuned = cli.tune_malloc()
kept = [cycle(32 << 20) for _ in range(3)]  # under the 100 MB cap: kept mapped
held = rss_mb()
big = [libc.malloc(64 << 20) for _ in range(3)]  # the heap passes the cap while they live
for p in big:
  ctypes.memset(p, 1, 64 << 20)
for p in big:
  libc.free(p)
deadline = time.time() + 20
while not cli.malloc_released() and time.time() < deadline:
  time.sleep(0.05)
print(tuned, cli.malloc_released(), max(kept[1:]), held, rss_mb(), min(cycle() for _ in range(3)))
"""


def test_malloc_tuning_gives_memory_back_past_its_heap_cap():
  """Under $GENJAX_MALLOC_HEAP_CAP_MB a tuned process keeps freed buffers mapped; once its heap
  passes the cap it returns the free pages (its resident size falls back) and maps big buffers
  afresh again, as glibc does by default. A cap that is not a positive number is one paragraph."""
  if not sys.platform.startswith("linux"):
    pytest.skip("glibc's mallopt: Linux only")
  base = {k: v for k, v in os.environ.items() if k not in ("GENJAX_MALLOC_TUNING", "JAX_PLATFORMS")}
  env = {**base, "GENJAX_MALLOC_TUNING": "on", "GENJAX_MALLOC_HEAP_CAP_MB": "100"}
  out = subprocess.run([sys.executable, "-c", _CAPPED], env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  tuned, released, kept_faults, held_mb, after_mb, refaults = out.stdout.split()
  assert tuned == "True" and released == "True", out.stdout
  assert int(kept_faults) < 1000, out.stdout  # 32 MB freed and allocated again: not faulted in
  # 192 MB written into the heap, then freed: handed back, so the process is no larger than before
  assert int(after_mb) < int(held_mb) + 64, out.stdout
  assert int(refaults) > 30000, out.stdout  # 256 MB buffers are mapped afresh (65,536 pages)
  assert "giving freed memory back" in out.stderr, out.stderr[-2000:]
  out = subprocess.run(
    [sys.executable, "-c", _CAPPED], env={**env, "GENJAX_MALLOC_HEAP_CAP_MB": "lots"}, capture_output=True, text=True
  )
  assert out.returncode == 2 and "must be a positive whole number of megabytes" in out.stderr, out.stderr[-2000:]
  assert "Traceback" not in out.stderr


def test_an_experiment_asks_to_keep_cpu_memory_and_the_switch_wins(monkeypatch):
  """config.parallel.keep_cpu_memory turns the malloc tuning on where $GENJAX_MALLOC_TUNING is unset,
  "off" turns it off whatever the config says, "on" turns it on for every config, and never where
  JAX would run on an accelerator; `genjax.train` hands its config's value (ddpm_mnist.py:cpu asks,
  the default VAE does not) to setup_devices, which applies it before JAX starts; `genjax.bench
  --diffusers` keeps memory only when every config it compares asks."""
  from genjax import cli, train

  monkeypatch.delenv(cli.MALLOC_TUNING_SWITCH, raising=False)
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  monkeypatch.setattr(cli, "_runs_on_an_accelerator", lambda: False)
  monkeypatch.setattr(cli.sys, "platform", "linux")
  assert cli.malloc_tuning_wanted(config_asks=True) and not cli.malloc_tuning_wanted()
  monkeypatch.setenv(cli.MALLOC_TUNING_SWITCH, "off")
  assert not cli.malloc_tuning_wanted(config_asks=True)
  monkeypatch.setenv(cli.MALLOC_TUNING_SWITCH, "on")
  assert cli.malloc_tuning_wanted()
  monkeypatch.setattr(cli, "_runs_on_an_accelerator", lambda: True)
  assert not cli.malloc_tuning_wanted(config_asks=True)

  class Stop(Exception):
    pass

  asked = []

  def setup_devices(args, cpu_devices=None, keep_cpu_memory=False):
    asked.append(keep_cpu_memory)
    raise Stop  # train.main goes on to JAX: the test only reads what it asks for

  monkeypatch.setattr(cli, "setup_devices", setup_devices)
  for spec in ("experiments/ddpm_mnist.py:cpu", "experiments/flow_mnist.py:cpu", "experiments/default.py"):
    with pytest.raises(Stop):
      train.main(["--config", spec, "--no_compilation_cache"])
  assert asked == [True, True, False], asked
  from genjax.perf import peers

  assert peers.diffusers_configs_keep_memory("experiments/ddpm_mnist.py:cpu")
  assert not peers.diffusers_configs_keep_memory(None)  # the default pair includes the full ddpm_mnist.py
  assert not peers.diffusers_configs_keep_memory("experiments/no_such_config.py")
