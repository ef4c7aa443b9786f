"""Launching training subprocesses that can never hang the test suite: every process gets a
deadline and is killed (SIGKILL, by its own pid) when the test ends, however it ends."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

from genjax.cli import simulated_devices_xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def child_env(devices: int) -> dict:
  """The environment of a child: `devices` simulated CPU devices, the repo importable."""
  return {
    **os.environ,
    "PYTHONPATH": REPO,
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": simulated_devices_xla_flags(devices, os.environ.get("XLA_FLAGS", "")),
  }


def train_command(config: str, workdir: str, *extra: str):
  return [sys.executable, "-m", "genjax.train", "--config", config, "--workdir", workdir, *extra]


class Group:
  """Processes started together (one run, maybe several hosts); killed on exit of the `with`."""

  def __init__(self, log_dir):
    self.procs, self.logs, self.log_dir = [], [], str(log_dir)

  def start(self, command, env):
    path = os.path.join(self.log_dir, f"proc{len(self.logs)}-{time.time_ns()}.log")
    out = open(path, "wb")
    self.logs.append(path)
    self.procs.append(subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT))
    out.close()
    return self.procs[-1]

  def wait(self, timeout: float):
    """Exit codes of every process; kills them all and fails if one outlives `timeout` seconds."""
    deadline = time.time() + timeout
    codes = []
    for p in self.procs:
      try:
        codes.append(p.wait(timeout=max(1.0, deadline - time.time())))
      except subprocess.TimeoutExpired:
        self.kill()
        raise AssertionError(f"a child outlived {timeout}s and was killed:\n{self.output()}") from None
    return codes

  def kill(self):
    for p in self.procs:
      if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    for p in self.procs:
      p.wait()

  def output(self, tail: int = 3000) -> str:
    texts = []
    for path in self.logs:
      with open(path, "rb") as f:
        texts.append(f"--- {os.path.basename(path)}\n" + f.read().decode(errors="replace")[-tail:])
    return "\n".join(texts)


@contextlib.contextmanager
def group(log_dir):
  g = Group(log_dir)
  try:
    yield g
  finally:
    g.kill()


def wait_until(predicate, timeout: float, procs=(), interval: float = 0.02) -> bool:
  """Polls `predicate` until it holds (True), the timeout passes or every process has ended."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return True
    if procs and all(p.poll() is not None for p in procs):
      return bool(predicate())
    time.sleep(interval)
  return False
