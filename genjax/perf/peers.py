"""The CPU GPT beside nanoGPT (`python -m genjax.bench --nanogpt DIR`): karpathy/nanoGPT, a clone
the user points to, on its CPU shakespeare_char setting, and genjax's copy of that setting
(experiments/gpt_shakespeare_char.py:cpu) in its own training loop, alternating runs, milliseconds
per step of each."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

import numpy as np

from genjax import cli, errors
from genjax import config as config_lib
from genjax.perf.registry import repo_path

# nanoGPT README, "I only have a MacBook": the setting experiments/gpt_shakespeare_char.py:cpu copies.
NANOGPT_CPU_ARGS = (
  "config/train_shakespeare_char.py",
  "--device=cpu",
  "--compile=False",
  "--eval_iters=20",
  "--log_interval=1",
  "--block_size=64",
  "--batch_size=12",
  "--n_layer=4",
  "--n_head=4",
  "--n_embd=128",
  "--lr_decay_iters=2000",
  "--dropout=0.0",
  "--eval_interval=100000",
)
GENJAX_CPU_GPT = "experiments/gpt_shakespeare_char.py:cpu"


def _run_logged(command: List[str], cwd: Optional[str] = None, env=None) -> str:
  import subprocess

  done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
  if done.returncode != 0:
    tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
    raise errors.ToolError(f"{' '.join(command[:4])} ... exited with {done.returncode}: " + " | ".join(tail))
  return done.stdout + done.stderr


def nanogpt_ms_per_iter(nanogpt_dir: str, python: str, iters: int, skip: int) -> Dict[str, Any]:
  """nanoGPT's own per-iteration wall time ("iter i: loss L, time T ms", which includes fetching
  the batch and reading the loss) over iterations skip..iters-1 (iteration 0 also evaluates)."""
  out_dir = tempfile.mkdtemp(prefix="genjax-bench-nanogpt-")
  text = _run_logged(
    [python, "train.py", *NANOGPT_CPU_ARGS, f"--max_iters={iters}", f"--out_dir={out_dir}"], cwd=nanogpt_dir
  )
  import re
  import shutil

  shutil.rmtree(out_dir, ignore_errors=True)
  found = [
    (int(i), float(loss), float(ms)) for i, loss, ms in re.findall(r"iter (\d+): loss ([\d.]+), time ([\d.]+)ms", text)
  ]
  times = [ms for i, _, ms in found if i >= skip]
  if not times:
    raise errors.ToolError(f"nanoGPT printed no iteration times past iteration {skip}; its output ended: {text[-300:]}")
  return {"ms_per_step": float(np.median(times)), "steps": len(times), "last_loss": found[-1][1]}


def genjax_ms_per_step(iters: int, window: int, data_dir: Optional[str]) -> Dict[str, Any]:
  """genjax's CPU GPT in its own training loop (a `python -m genjax.train` process, the config as
  it is, including its config.parallel.cpu_devices): the median wall time per step over the loop's
  log windows after the first (which holds the compilation)."""
  from genjax.trainer import writers

  workdir = tempfile.mkdtemp(prefix="genjax-bench-gpt-")
  command = [sys.executable, "-m", "genjax.train", "--config", repo_path(GENJAX_CPU_GPT), "--workdir", workdir]
  for key, value in {
    "train.steps": iters,
    "train.log_every": window,
    "train.eval_every": iters,
    "train.checkpoint_every": iters,
    "train.progress": "false",
    "eval.num_batches": 1,
    "optim.decay_steps": 2000,  # the learning-rate schedule of the 2000-step run, cut off
  }.items():
    command.append(f"--config.{key}={value}")
  if data_dir:
    command.append(f"--config.data.data_dir={data_dir}")
  _run_logged(command)
  import shutil

  records = [r for r in writers.read_metrics(workdir) if r.get("steps_per_sec")]
  shutil.rmtree(workdir, ignore_errors=True)
  rates = [r["steps_per_sec"] for r in records if r["step"] > window]
  if not rates:
    raise errors.ToolError("the genjax run logged no steps/s after its first window")
  return {
    "ms_per_step": float(np.median([1e3 / r for r in rates])),
    "steps": iters - window,
    "last_loss": records[-1]["loss"],
  }


def check_clone(nanogpt_dir: str):
  """A ConfigError naming what is missing: the clone (its train.py), then its prepared data."""
  if not os.path.isfile(os.path.join(nanogpt_dir, "train.py")):
    raise config_lib.ConfigError(
      f"--nanogpt={nanogpt_dir!r} is not a nanoGPT checkout (no train.py there). Clone "
      "https://github.com/karpathy/nanoGPT, run its data/shakespeare_char/prepare.py, and pass the clone's path."
    )
  if not os.path.isfile(os.path.join(nanogpt_dir, "data", "shakespeare_char", "train.bin")):
    raise config_lib.ConfigError(
      f"nanoGPT's shakespeare_char data is not prepared in {nanogpt_dir}: copy Tiny Shakespeare's input.txt "
      "to data/shakespeare_char/ there and run `python data/shakespeare_char/prepare.py` in the clone."
    )


def run(
  nanogpt_dir: str, torch_python: str, rounds: int, quick: bool, data_dir: Optional[str], out: Optional[str]
) -> Dict[str, Any]:
  """Alternating runs of genjax's CPU GPT and nanoGPT's CPU shakespeare_char setting (same model,
  batch and optimizer), `rounds` of each, so both see the same machine minute by minute."""
  check_clone(nanogpt_dir)
  iters = 40 if quick else 300
  runs = []
  for r in range(rounds):
    for name in ("genjax", "nanogpt"):
      t0 = time.perf_counter()
      if name == "genjax":
        result = genjax_ms_per_step(iters, 10 if quick else 25, data_dir)
      else:
        result = nanogpt_ms_per_iter(nanogpt_dir, torch_python, iters, skip=10)
      result.update(name=name, round=r, wall_s=time.perf_counter() - t0, load_average=list(os.getloadavg()))
      runs.append(result)
      print(
        f"round {r} {name:8s} {result['ms_per_step']:7.2f} ms/step (median of {result['steps']} steps), "
        f"last loss {result['last_loss']:.4f}, load {result['load_average'][0]:.2f}",
        flush=True,
      )
  med = {n: float(np.median([x["ms_per_step"] for x in runs if x["name"] == n])) for n in ("genjax", "nanogpt")}
  print(
    f"median over rounds: genjax {med['genjax']:.2f} ms/step, nanoGPT {med['nanogpt']:.2f} ms/step: "
    f"genjax takes {med['genjax'] / med['nanogpt']:.2f}x nanoGPT's time per step"
  )
  result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": runs, "median_ms_per_step": med}
  if out:
    with open(out, "w") as f:
      json.dump(result, f, indent=1)
  return result


# ----------------------------------------------------------------------------------------------
# The diffusion U-Net train step beside diffusers' UNet2DModel (`python -m genjax.bench --diffusers`)
# ----------------------------------------------------------------------------------------------

DIFFUSERS_SCRIPT = "experiments/reference/torch_diffusers_unet.py"
DIFFUSERS_CONFIGS = ("experiments/ddpm_mnist.py:cpu", "experiments/ddpm_mnist.py")


def unet_spec(exp, info) -> Dict[str, Any]:
  """What the PyTorch script needs to build diffusers' UNet2DModel in the shape of this experiment's
  DDPM U-Net and to take the same step (torch_diffusers_unet.py's --spec)."""
  m = exp.model
  if getattr(m, "backbone", None) != "unet" or getattr(m, "formulation", None) != "ddpm":
    raise errors.ConfigError(
      f"--diffusers compares DDPM's U-Net (backbone 'unet', formulation 'ddpm'); {exp.name} has "
      f"backbone {getattr(m, 'backbone', None)!r} and formulation {getattr(m, 'formulation', None)!r}."
    )
  return {
    "ch": m.ch,
    "ch_mult": list(m.ch_mult),
    "num_res_blocks": m.num_res_blocks,
    "attn_resolutions": list(m.attn_resolutions),
    "dropout": m.dropout,
    "num_classes": info.num_classes if m.class_conditional else None,
    "image_shape": list(info.shape),
    "timesteps": m.timesteps,
    "batch_size": exp.train.batch_size,
    "learning_rate": exp.optim.learning_rate,
    "grad_clip_norm": exp.optim.grad_clip_norm,
    "ema_decay": exp.optim.ema_decay or 0.0,
  }


def _diffusers_specs(configs: Optional[str]) -> List[str]:
  return [s.strip() for s in (configs or ",".join(DIFFUSERS_CONFIGS)).split(",") if s.strip()]


def diffusers_configs_keep_memory(configs: Optional[str]) -> bool:
  """Whether every config --diffusers compares asks to keep XLA:CPU's memory mapped
  (config.parallel.keep_cpu_memory): the process then runs as their `genjax.train` would. Reads
  the config files only (no JAX backend); a config that does not load is left to diffusers_run."""
  try:
    return all(config_lib.load_config_file(repo_path(s)).parallel.keep_cpu_memory for s in _diffusers_specs(configs))
  except errors.UserError:  # diffusers_run reports the bad config in one paragraph
    return False


def _genjax_unet_program(spec_path: str):
  from genjax import data as data_lib
  from genjax.trainer import program as program_lib

  exp = config_lib.validate(config_lib.load_config_file(repo_path(spec_path)))
  exp = dataclasses.replace(
    exp,
    train=dataclasses.replace(exp.train, steps_per_call=1, progress=False),
    parallel=config_lib.Parallel(mode="jit", num_devices=1),
  )
  info = data_lib.describe(exp.data)
  return exp, info, program_lib.build(exp, info)


def diffusers_run(
  configs: Optional[str], torch_python: str, rounds: int, steps: int, out: Optional[str]
) -> Dict[str, Any]:
  """For each config: genjax's compiled train step (the loop's own call, measure_train) and the same
  step of diffusers' UNet2DModel in the same shape, alternating `rounds` times; mean ms per step of
  each over `steps` steps after the first, and both parameter counts."""
  import math
  import subprocess

  from genjax.perf.measure import measure_train

  specs = _diffusers_specs(configs)
  if rounds < 1 or steps < 2:
    raise errors.ConfigError(f"--rounds={rounds} and --diffusers_steps={steps} must be at least 1 and 2.")
  rows = []
  for spec_path in specs:
    exp, info, program = _genjax_unet_program(spec_path)
    spec = unet_spec(exp, info)
    params = jax_param_count(program)
    for r in range(rounds):
      got = measure_train(program, min_time=math.inf, max_steps=steps, profile=False)
      mine = {"ms_per_step": 1e3 * got["seconds_per_step"], "steps": got["timed_steps"]}
      command = [torch_python, repo_path(DIFFUSERS_SCRIPT), "--spec", json.dumps(spec), "--steps", str(steps)]
      done = subprocess.run(command, capture_output=True, text=True)
      if done.returncode != 0:
        raise errors.ToolError(f"{DIFFUSERS_SCRIPT} exited with {done.returncode}: {done.stderr.strip()[-500:]}")
      theirs = json.loads(done.stdout.strip().splitlines()[-1])
      row = {
        "config": spec_path,
        "round": r,
        "batch": spec["batch_size"],
        "genjax_params": params,
        "diffusers_params": theirs["params"],
        "genjax_ms_per_step": mine["ms_per_step"],
        "diffusers_ms_per_step": theirs["ms_per_step"],
        "torch": theirs["torch"],
        "torch_threads": theirs["threads"],
        "load_average": list(os.getloadavg()),
        "genjax_keeps_cpu_memory": cli.malloc_tuned(),
      }
      rows.append(row)
      print(
        f"{spec_path} round {r}: genjax {row['genjax_ms_per_step']:8.1f} ms/step ({params:,} params"
        f"{', memory kept mapped' if row['genjax_keeps_cpu_memory'] else ''}), diffusers "
        f"{row['diffusers_ms_per_step']:8.1f} ms/step ({theirs['params']:,} params), batch {spec['batch_size']}, "
        f"load {row['load_average'][0]:.2f}",
        flush=True,
      )
    mine_med = float(np.median([x["genjax_ms_per_step"] for x in rows if x["config"] == spec_path]))
    theirs_med = float(np.median([x["diffusers_ms_per_step"] for x in rows if x["config"] == spec_path]))
    print(
      f"{spec_path}: median over rounds genjax {mine_med:.1f} ms/step, diffusers {theirs_med:.1f} ms/step: "
      f"genjax takes {mine_med / theirs_med:.2f}x diffusers' time per step"
    )
  result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
  if out:
    with open(out, "w") as f:
      json.dump(result, f, indent=1)
  return result


def jax_param_count(program) -> int:
  """The parameters of a program's state, from shapes alone."""
  import math

  import jax

  return sum(math.prod(p.shape) for p in jax.tree.leaves(program.abstract_state.params))
