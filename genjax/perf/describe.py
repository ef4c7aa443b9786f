"""What `python -m genjax.train --print_config` prints: an experiment as it would run, without
training it. The resolved config, the parameter count, and XLA's own figures for the compiled
train step (FLOPs per step, memory per device); compiling it also fills the persistent
compilation cache, so the `train` that follows starts without compiling that call again."""

import math
import time
from typing import Any, Dict, List

import jax
import numpy as np

from genjax import config as config_lib
from genjax import data as data_lib
from genjax.core import sharding
from genjax.perf.measure import compiled_memory, cost_flops
from genjax.trainer import program as program_lib


def _abstract_state(program):
  """The state's shapes as the compiled train step takes them (pmap: one copy per device)."""
  p = program.placement
  if p.on_mesh:
    return program.abstract_state
  d = len(p.devices)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct((d, *x.shape), x.dtype), program.abstract_state)


def _example_batch(program):
  """Zeros shaped like this process's part of one train call's batch, placed."""
  exp, p = program.exp, program.placement
  batch = program.info.example_batch(exp.train.batch_size // p.batch_shards)
  if program.stacked:
    batch = {k: np.broadcast_to(v, (exp.train.steps_per_call, *v.shape)) for k, v in batch.items()}
  return program.put_batch(batch)


def describe(exp: config_lib.Experiment, compile_step: bool = True) -> Dict[str, Any]:
  """The figures --print_config prints (see the module docstring). With compile_step False, only
  what needs no compilation (config, parameters, the state's bytes per device)."""
  info = data_lib.describe(exp.data)
  program = program_lib.build(exp, info)
  p = program.placement
  abstract = program.abstract_state
  params = getattr(abstract, "params", abstract)
  out: Dict[str, Any] = {
    "experiment": exp.name,
    "family": exp.family,
    "model": type(exp.model).__name__ if exp.model is not None else None,
    "notes": program.family.notes,
    "parameters": sum(math.prod(x.shape) for x in jax.tree.leaves(params)),
    "placement": p.describe(),
    "state_bytes_per_device": sharding.bytes_per_device(abstract, p.state_sharding),
    "batch_size": exp.train.batch_size,
    "steps_per_call": exp.train.steps_per_call,
  }
  if compile_step:
    t0 = time.perf_counter()
    compiled = program.train_step.lower(_abstract_state(program), _example_batch(program), np.int32(0)).compile()
    out["compile_s"] = time.perf_counter() - t0
    # XLA counts one device's program (after SPMD partitioning on a mesh, the pmapped body under
    # pmap): a step's FLOPs are that times the devices. Several steps per call are a lax.scan over
    # the step, whose body XLA counts once: the count is already one step's.
    out["flops_per_step"] = cost_flops(compiled) * p.num_devices
    memory = compiled_memory(compiled)
    out["step_bytes_per_device"] = memory["total_bytes"]
    out["temp_bytes_per_device"] = memory["temp_bytes"]
  return out


def _size(n: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if abs(n) < 1024 or unit == "TiB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
    n /= 1024
  return str(n)


def format_description(d: Dict[str, Any]) -> List[str]:
  """The summary lines under the config."""
  pl = d["placement"]
  lines = [
    f"experiment   {d['experiment']} ({d['family']}, {d['model']})",
    f"model        {d['notes']}" if d["notes"] else None,
    f"parameters   {d['parameters']:,} ({d['parameters'] / 1e6:.2f}M)",
    f"placement    {pl['mode']} on {pl['devices']} device(s), model axis {pl['model_parallel']}; "
    f"global batch {d['batch_size']}, {d['steps_per_call']} step(s) per call",
    f"state        {_size(d['state_bytes_per_device'])} per device (parameters, optimizer state, EMA)",
  ]
  if "flops_per_step" in d:
    lines += [
      f"train step   {d['flops_per_step']:.4g} FLOP per step ({d['flops_per_step'] / d['batch_size']:.4g} per "
      "example; XLA's cost analysis of the compiled step)",
      f"memory       {_size(d['step_bytes_per_device'])} per device for the compiled step (arguments + outputs "
      f"+ {_size(d['temp_bytes_per_device'])} temporaries, less donated buffers; XLA's memory analysis)",
      f"compiled in  {d['compile_s']:.1f} s (kept in the persistent compilation cache unless it is off)",
    ]
  return [line for line in lines if line]
