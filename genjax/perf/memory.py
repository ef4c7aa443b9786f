"""The memory of the sharded step (`python -m genjax.bench --memory`): per-device memory of the
compiled train step of GPT-2 medium and large on MEMORY_DEVICES devices, replicated vs FSDP vs
FSDP + tensor parallel. Compiles only: nothing is allocated or run."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from genjax import config as config_lib
from genjax import data as data_lib
from genjax import families
from genjax.core.placement import place
from genjax.perf import tables
from genjax.perf.measure import compiled_memory
from genjax.perf.registry import load_config
from genjax.trainer import program as program_lib

MEMORY_CONFIGS = ("experiments/gpt2.py:medium", "experiments/gpt2.py:large")
MEMORY_LAYOUTS = (("jit", 1), ("fsdp", 1), ("fsdp", 2))  # (mode, model_parallel): replicated, FSDP, FSDP + TP
MEMORY_DEVICES = 8


def measure_memory(spec: str, devices: int = MEMORY_DEVICES, batch: int = MEMORY_DEVICES) -> List[Dict[str, Any]]:
  """Per-device memory of the compiled train step of `spec` under each layout of MEMORY_LAYOUTS:
  the state's bytes per device (from the shardings) and XLA's memory analysis of the compiled
  step (arguments, outputs, temporaries). Compiles only: nothing is allocated or run."""
  exp = load_config(spec)
  exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, batch_size=batch, steps_per_call=1))
  info = data_lib.describe(exp.data)
  if info.kind != "text":
    raise config_lib.ConfigError(
      f"--memory_configs: {spec} is an experiment on {exp.data.name} ({info.kind}); --memory measures the "
      "train step of a language model on batches of tokens (a config of the autoregressive family on text, "
      "e.g. experiments/gpt2.py:medium)."
    )
  family = families.build(exp, info)
  abstract = jax.eval_shape(family.init, jax.random.key(0))
  params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract.params))
  rows = []
  for mode, model_parallel in MEMORY_LAYOUTS:
    parallel = config_lib.Parallel(mode=mode, num_devices=devices, model_parallel=model_parallel)
    program = program_lib.build(exp, info, place(parallel))
    par, state = program.placement, program.abstract_state
    tokens = jax.ShapeDtypeStruct((batch, info.shape[0] + 1), jnp.int32, sharding=par.batch_sharding())
    t0 = time.perf_counter()
    compiled = program.train_step.lower(state, {"tokens": tokens}, np.int32(0)).compile()
    figures = compiled_memory(compiled)
    rows.append(
      {
        "config": spec,
        "parameters": params,
        "mode": mode,
        "model_parallel": model_parallel,
        "devices": devices,
        "batch": batch,
        "state_bytes_per_device": sharding_bytes(abstract, par.state_sharding),
        **{k: figures[k] for k in ("argument_bytes", "output_bytes", "temp_bytes", "alias_bytes")},
        "compile_s": time.perf_counter() - t0,
      }
    )
    rows[-1]["total_bytes"] = figures["total_bytes"]
    print(
      f"[memory] {spec} {mode} x{model_parallel}: state {rows[-1]['state_bytes_per_device'] / 2**30:.2f} GiB/device, "
      f"compiled step {rows[-1]['total_bytes'] / 2**30:.2f} GiB/device",
      file=sys.stderr,
      flush=True,
    )
  return rows


def sharding_bytes(abstract, shardings) -> int:
  from genjax.core import sharding

  return sharding.bytes_per_device(abstract, shardings)


def run(configs: Optional[str], out: Optional[str]) -> Dict[str, Any]:
  """measure_memory of each comma-separated config spec of `configs` (default MEMORY_CONFIGS) on
  this process's MEMORY_DEVICES devices: the table printed, the JSON written to `out`."""
  specs = [s.strip() for s in configs.split(",") if s.strip()] if configs else list(MEMORY_CONFIGS)
  rows = [row for spec in specs for row in measure_memory(spec)]
  result = {
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "jax": jax.__version__,
    "device": jax.devices()[0].platform,
    "memory": rows,
  }
  if out:
    with open(out, "w") as f:
      json.dump(result, f, indent=1)
  print(tables.format_memory(rows))
  return result
