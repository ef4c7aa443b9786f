"""What the compilation cache saves (`python -m genjax.bench --startup`): for each config, a short
`genjax.train` run twice in fresh workdirs (the first with an empty cache, the second reading it
back), then `genjax.sample` and `genjax.evaluate` on the finished run twice each; every command a
fresh process, timed from its start to its first logged step (train) and to its exit.

The cache is a new folder of this command's own, so "first" is a cold start whatever the machine
has cached before. Nothing else may run meanwhile: the figures are wall-clock times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from genjax import compile_cache, errors
from genjax.perf.registry import repo_path

STARTUP_CONFIGS = (
  "experiments/ddpm_mnist.py:cpu",
  "experiments/wgan_gp_mnist.py:cpu",
  "experiments/gpt_shakespeare_char.py:cpu",
)
# `genjax.evaluate` on 16 examples for the families with an evaluation of their own (a GAN's is
# sample metrics over 10,000 samples: its `sample` rows show what the cache does for it)
EVALUATE = ("--no_log", "--max_examples", "16", "--batch_size", "16")


def _short(steps: int) -> List[str]:
  """A run of `steps` steps that logs every step and evaluates (and draws samples) once, at the end."""
  return [
    f"--config.train.steps={steps}",
    "--config.train.log_every=1",
    f"--config.train.eval_every={steps}",
    f"--config.train.checkpoint_every={steps}",
    "--config.train.steps_per_call=1",
    "--config.train.progress=false",
    "--config.optim.warmup_steps=0",
    "--config.eval.num_batches=1",
    "--config.eval.num_samples=16",
  ]


def _timed(command: List[str], env: dict, first_line_of: Optional[str] = None) -> Dict[str, float]:
  """Seconds from start to exit of `command` (and to the first line of file `first_line_of`)."""
  t0 = time.perf_counter()
  proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  first = None
  while proc.poll() is None:
    if first is None and first_line_of and os.path.exists(first_line_of) and os.path.getsize(first_line_of) > 0:
      first = time.perf_counter() - t0
    time.sleep(0.02)
  total = time.perf_counter() - t0
  if proc.returncode != 0:
    raise errors.ToolError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr.read()[-2000:]}")
  return {"total_s": round(total, 2), **({"first_step_s": round(first, 2)} if first is not None else {})}


def measure(spec: str, steps: int, root: str, env: dict) -> List[Dict[str, Any]]:
  """Rows of one config: train first/second, then sample and evaluate first/second."""
  rows, python = [], sys.executable
  for run in ("first", "second"):
    workdir = os.path.join(root, f"{os.path.basename(spec)}-{run}")
    metrics = os.path.join(workdir, "metrics.jsonl")
    command = [python, "-m", "genjax.train", "--config", repo_path(spec), "--workdir", workdir, *_short(steps)]
    rows.append({"config": spec, "command": "train", "run": run, "steps": steps, **_timed(command, env, metrics)})
  workdir = os.path.join(root, f"{os.path.basename(spec)}-first")
  for run in ("first", "second"):
    out = os.path.join(root, f"samples-{run}.npy")
    command = [python, "-m", "genjax.sample", "--workdir", workdir, "--num", "16", "--out", out]
    rows.append({"config": spec, "command": "sample --num 16", "run": run, **_timed(command, env)})
  for run in ("first", "second") if "gan" not in os.path.basename(spec) else ():
    command = [python, "-m", "genjax.evaluate", "--workdir", workdir, *EVALUATE]
    rows.append({"config": spec, "command": "evaluate --max_examples 16", "run": run, **_timed(command, env)})
  return rows


def run(configs: Optional[str], steps: int, out: Optional[str]) -> Dict[str, Any]:
  """Every row of every config (default STARTUP_CONFIGS), printed as a table and written to `out`."""
  specs = [s.strip() for s in configs.split(",") if s.strip()] if configs else list(STARTUP_CONFIGS)
  rows: List[Dict[str, Any]] = []
  with tempfile.TemporaryDirectory() as root:
    env = {k: v for k, v in os.environ.items() if k != compile_cache.JAX_ENV_DIR}
    env[compile_cache.ENV_SWITCH] = os.path.join(root, "compilation_cache")
    for spec in specs:
      rows += measure(spec, steps, root, env)
      print(f"[startup] {spec} done", file=sys.stderr, flush=True)
  result = {
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "cpu_count": os.cpu_count(),
    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    "rows": rows,
  }
  print(f"{'config':42s} {'command':28s} {'run':7s} {'first step s':>12s} {'total s':>9s}")
  for r in rows:
    first = f"{r['first_step_s']:.1f}" if "first_step_s" in r else "-"
    print(f"{r['config']:42s} {r['command']:28s} {r['run']:7s} {first:>12s} {r['total_s']:9.1f}")
  if out:
    with open(out, "w") as f:
      json.dump(result, f, indent=1)
  return result
