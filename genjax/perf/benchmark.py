"""The benchmark of every family (`python -m genjax.bench`): every figure of one registry entry
(run_one), and a run over several entries that writes its JSON after each (run).

For the standard config of each family (the experiments/ files, built with
genjax.config.load_config_file) the benchmark compiles the train step exactly as the loop does
(genjax.trainer.program: the loop's own train call, jit over a one-device mesh, state donated), feeds it synthetic
batches of the right shapes (no dataset needed) and reports, per config:

  train_examples_per_s  examples (tokens for text: train_tokens_per_s) per second, steady state
  flops_per_step        model FLOPs of one step from XLA's own cost analysis of the compiled step
  matmul_flops_per_s    this device's measured matmul rate in the step's compute dtype, this run
  mfu_measured          flops_per_step * steps/s / matmul rate;  mfu_peak: against the data sheet
                        (H100/H200 989 TFLOP/s bf16 dense, A100 312; none on CPU)
  mfu_note              on the CPU, what holds a config below 0.40 (when it is)
  peak_memory_bytes     device.memory_stats()["peak_bytes_in_use"]; on CPU (no stats) the
                        process's peak RSS, which is cumulative over the run (memory_source says)
  compile_s, first_step_s   lowering+compilation, and init + compile + the first step
  pipeline_*            examples/s of Dataset.batch on this host (the config's dataset when it is
                        prepared, else the embedded digits, as `pipeline_dataset` says) and its
                        ratio to the train step's consumption (must stay > 1)
  sample_*              sampling: seconds per image, per token at two lengths (GPT: flat with a
                        KV cache), DDIM's cost per U-Net evaluation and its fixed overhead
  checkpoint_*          seconds the loop is blocked by an asynchronous Checkpoints.save of the
                        state vs the whole save's time
  loop_*                (full mode, dataset prepared) a short genjax.train.loop.train run's steady
                        steps/s and the fraction of wall time spent outside the compiled step

On a CPU the standard batches take minutes per step for the largest models, so the benchmark
uses `cpu_batch` there (printed as `batch`); FLOPs/MFU are per step of that batch. `--quick`
shrinks every model to test size and runs a few steps: it is what CI runs (tests/test_bench.py).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any, Dict, List, Optional

import jax

from genjax import data as data_lib
from genjax.perf import tables
from genjax.perf.measure import (
  data_sheet_peak,
  matmul_rate,
  measure_checkpoint,
  measure_loop,
  measure_pipeline,
  measure_sampling,
  measure_train,
  peak_memory,
)
from genjax.perf.registry import BENCHMARKS, experiment_for, load_config
from genjax.trainer import program as program_lib


def run_one(
  name: str,
  quick: bool,
  with_loop: bool,
  rates: Dict[str, float],
  data_dir: Optional[str] = None,
  dtype: Optional[str] = None,
  min_time: Optional[float] = None,
  sampling: bool = True,
) -> Dict[str, Any]:
  """Every figure of one benchmark; `min_time` seconds of steady-state timing (default 8, 0.5
  quick); `sampling=False` skips the sampling figures."""
  device = jax.devices()[0]
  entry = BENCHMARKS[name]
  exp = experiment_for(name, quick, device.platform == "cpu", data_dir, dtype)
  standard = load_config(entry.config)
  info = entry.info or data_lib.describe(exp.data)
  program = program_lib.build(exp, info)
  family = program.family
  row: Dict[str, Any] = {
    "name": name,
    "family": exp.family,
    "config": entry.config,
    "note": entry.note,
    "batch": exp.train.batch_size,
    "compute_dtype": exp.train.compute_dtype,
    "family_notes": family.notes,
  }
  min_time = min_time if min_time is not None else (0.5 if quick else 8.0)
  state = _train_figures(row, program, entry, device, rates, quick, min_time)
  row.update(peak_memory(device))
  row.update(measure_pipeline(exp, steps=5 if quick else 50))
  row["pipeline_over_train"] = row["pipeline_examples_per_s"] / row["train_examples_per_s"]
  if sampling:
    row.update(measure_sampling(program, state, quick))
  row.update(measure_checkpoint(state))
  row["loop_outside_step_fraction"] = None
  if with_loop:
    row.update(_loop_figures(row, exp, standard.train.steps_per_call))
  row.update(time_breakdown(row, standard.train.steps_per_call if with_loop else 1))
  return row


def _train_figures(row, program, entry, device, rates, quick: bool, min_time: float):
  """The train step's figures into `row` (rates, FLOPs, MFU against the measured matmul rate and
  the data sheet); returns the state after the timed steps."""
  dtype, info = program.exp.train.compute_dtype, program.info
  train = measure_train(program, min_time=min_time, max_steps=3 if quick else 200)
  state = train.pop("state")
  # The matmul rate right after the step's timing, so both see the same machine (shared hosts).
  rates[dtype] = matmul_rate(dtype, device, n=512 if quick else 2048, min_time=0.2 if quick else 1.0)
  row.update(
    {
      f"train_{k}" if k in ("examples_per_s", "seconds_per_step", "timed_steps", "last_metrics") else k: v
      for k, v in train.items()
    }
  )
  if info.kind == "text":
    row["train_tokens_per_s"] = row["train_examples_per_s"] * info.shape[0]
  achieved = row["flops_per_step"] / row["train_seconds_per_step"]
  row["achieved_flops_per_s"] = achieved
  row["matmul_flops_per_s"] = rates[dtype]
  row["mfu_measured"] = achieved / rates[dtype]
  if device.platform == "cpu" and entry.cpu_bound and row["mfu_measured"] < 0.40:
    row["mfu_note"] = entry.cpu_bound
  peak = data_sheet_peak(device, dtype)
  row["peak_flops_per_s"] = peak
  row["mfu_peak"] = achieved / peak if peak else None
  return state


def _loop_figures(row: Dict[str, Any], exp, steps_per_call: int) -> Dict[str, Any]:
  """A short loop run's figures (measure_loop), or why it was skipped: the dataset is not
  prepared, or one step is so slow that the loop's own work cannot show."""
  if row["pipeline_dataset"] != exp.data.name:
    return {"loop_note": f"skipped: {exp.data.name} is not prepared"}
  if row["train_seconds_per_step"] > 2.0:
    return {
      "loop_note": f"skipped: one step takes {row['train_seconds_per_step']:.1f} s, next to which the "
      "loop's per-step work (milliseconds) is negligible"
    }
  window = max(3, min(20, int(4.0 / row["train_seconds_per_step"])))
  out = measure_loop(exp, window, steps_per_call)
  if out.get("loop_steps_per_s"):
    out["loop_outside_step_fraction"] = max(0.0, 1.0 - out["loop_steps_per_s"] * row["train_seconds_per_step"])
  return out


def time_breakdown(row: Dict[str, Any], steps_per_call: int) -> Dict[str, Any]:
  """Milliseconds per train step: the compiled step alone (device compute, one step per call),
  the host's work to make its batch (Dataset.batch, done on the loop's prefetch thread), and,
  when the loop ran, what the loop adds around the step (its steps_per_call steps per call)."""
  out = {"time_step_ms": 1e3 * row["train_seconds_per_step"]}
  out["time_input_ms"] = (
    1e3 * row["batch"] / row["pipeline_examples_per_s"] if row.get("pipeline_examples_per_s") else None
  )
  if row.get("loop_steps_per_s"):
    out["time_loop_ms"] = 1e3 / row["loop_steps_per_s"]
    out["time_loop_steps_per_call"] = steps_per_call
  return out


def run(
  names: List[str],
  quick: bool,
  with_loop: bool,
  data_dir: Optional[str] = None,
  dtype: Optional[str] = None,
  min_time: Optional[float] = None,
  out: Optional[str] = None,
) -> Dict[str, Any]:
  """run_one for each of `names` (a failure is a row with its error, except in quick mode), the
  JSON written to `out` after every config (a long run's finished rows are kept), the tables
  printed at the end."""
  device = jax.devices()[0]
  rates: Dict[str, float] = {}
  rows = []
  for name in names:
    t0 = time.perf_counter()
    try:
      row = run_one(name, quick, with_loop, rates, data_dir, dtype, min_time)
    except Exception as e:  # noqa: BLE001 - one config's failure is reported, the others still run
      if quick:
        raise
      row = {"name": name, "error": f"{type(e).__name__}: {e}"}
      print(f"[{name}] FAILED: {row['error']}", file=sys.stderr, flush=True)
    row["bench_s"] = time.perf_counter() - t0
    row["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    rows.append(row)
    print(f"[{name}] done in {row['bench_s']:.1f} s", file=sys.stderr, flush=True)
    result = result_of(quick, device, rates, rows)
    if out:
      with open(out, "w") as f:
        json.dump(result, f, indent=1, default=float)
  print(tables.report(rows, device, rates, result["load_average"]))
  return result


def result_of(quick: bool, device, rates, rows) -> Dict[str, Any]:
  """The run's JSON: when, on what (device, host, jax, the compilation cache), the matmul rates
  and the rows."""
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  return {
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "quick": quick,
    "device": {
      "platform": device.platform,
      "kind": getattr(device, "device_kind", ""),
      "count": jax.device_count(),
      "cpu_count": os.cpu_count(),
      "host": platform.machine(),
    },
    "load_average": list(load) if load else None,
    "jax": jax.__version__,
    # compile_s and first_step_s read a program back when the persistent cache holds it
    # (--no_compilation_cache measures cold compilations)
    "compilation_cache": jax.config.jax_compilation_cache_dir if jax.config.jax_enable_compilation_cache else None,
    "matmul_flops_per_s": rates,
    "rows": rows,
  }
