"""The measurements the benchmark is made of, each on one config's compiled step or state:
timing (best-of seconds per call), this device's matmul rate and data-sheet peak, XLA's FLOP
count of a compiled step, peak memory, and the train step, sampling, checkpoint, input pipeline
and training loop figures (measure_*)."""

from __future__ import annotations

import dataclasses
import math
import resource
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from genjax import config as config_lib
from genjax import data as data_lib
from genjax.core import flops
from genjax.perf import hlo_profile
from genjax.perf.registry import synthetic_batch

# Data-sheet dense peaks in FLOP/s by (device kind substring, dtype).
PEAK_FLOPS = {
  ("h200", "bfloat16"): 989e12,
  ("h100", "bfloat16"): 989e12,
  ("a100", "bfloat16"): 312e12,
  ("h200", "float32"): 67e12,
  ("h100", "float32"): 67e12,
  ("a100", "float32"): 19.5e12,
}


def _timed(fn: Callable[[], Any], min_time: float, min_reps: int, max_reps: int) -> float:
  """Best-of seconds per call of fn() (which must block), after one warm-up call."""
  fn()
  best, total, reps = math.inf, 0.0, 0
  while reps < min_reps or (total < min_time and reps < max_reps):
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    best, total, reps = min(best, dt), total + dt, reps + 1
  return best


def matmul_rate(dtype: str, device, n: int = 2048, min_time: float = 1.0) -> float:
  """FLOP/s of an n x n x n matmul in `dtype` on `device` (best of several)."""
  a = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype), device)
  b = jax.device_put(jnp.asarray(np.random.default_rng(1).standard_normal((n, n)), dtype), device)
  f = jax.jit(jnp.matmul)
  seconds = _timed(lambda: f(a, b).block_until_ready(), min_time, 3, 50)
  return 2.0 * n**3 / seconds


def data_sheet_peak(device, dtype: str) -> Optional[float]:
  kind = getattr(device, "device_kind", "").lower()
  for (name, dt), peak in PEAK_FLOPS.items():
    if name in kind and dt == dtype:
      return peak
  return None


def cost_flops(compiled) -> float:
  """XLA's FLOP count of a compiled (or lowered) call."""
  return flops.of_cost(compiled.cost_analysis())


def compiled_memory(compiled) -> Dict[str, int]:
  """XLA's memory analysis of a compiled call, per device: argument, output, temporary and
  aliased (donated) bytes, and their total (arguments + outputs + temporaries - aliased)."""
  mem = compiled.memory_analysis()
  get = lambda name: int(getattr(mem, name, 0) or 0) if mem is not None else 0  # noqa: E731
  out = {k: get(f"{k}_size_in_bytes") for k in ("argument", "output", "temp", "alias")}
  return {
    **{f"{k}_bytes": v for k, v in out.items()},
    "total_bytes": out["argument"] + out["output"] + out["temp"] - out["alias"],
  }


def peak_memory(device) -> Dict[str, Any]:
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # noqa: BLE001 - backends without stats raise various errors
    stats = None
  if stats and "peak_bytes_in_use" in stats:
    return {"peak_memory_bytes": int(stats["peak_bytes_in_use"]), "memory_source": "device.memory_stats"}
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
  return {"peak_memory_bytes": int(rss), "memory_source": "process peak RSS (no device stats; cumulative)"}


def measure_train(program, min_time: float, max_steps: int, profile: bool = True) -> Dict[str, Any]:
  """Compiles the loop's own train call (genjax.trainer.program: keyed steps, state donated) and
  times it on one synthetic batch; with `profile`, also where the step's time goes
  (genjax.perf.hlo_profile: a trace of a few more steps)."""
  B = program.exp.train.batch_size
  host_batch = synthetic_batch(program.info, B)
  t0 = time.perf_counter()
  state = program.init_state()
  batch = program.put_batch(host_batch)
  rngs = [np.int32(i) for i in range(max_steps + 1)]  # the steps whose keys the call draws
  t_lower = time.perf_counter()
  compiled = program.train_step.lower(state, batch, rngs[0]).compile()
  compile_s = time.perf_counter() - t_lower
  state, metrics = compiled(state, batch, rngs[0])
  jax.block_until_ready((state, metrics))
  first_step_s = time.perf_counter() - t0
  # Steady state: dispatch steps back to back (as the loop does) and wait once at the end.
  steps, t_start = 0, time.perf_counter()
  while steps < 2 or (time.perf_counter() - t_start < min_time and steps < max_steps):
    state, metrics = compiled(state, batch, rngs[1 + steps])
    steps += 1
    if steps == 2 or steps % 4 == 0:
      jax.block_until_ready(metrics)
  jax.block_until_ready((state, metrics))
  seconds_per_step = (time.perf_counter() - t_start) / steps
  last = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in jax.device_get(metrics).items()}
  phases = {}
  if profile:
    holder = {"state": state}

    def run():
      holder["state"], out = compiled(holder["state"], batch, rngs[0])
      jax.block_until_ready(out)

    calls = max(1, min(5, int(2.0 / seconds_per_step)))
    try:
      ops = hlo_profile.trace_ops(run, hlo_profile.parse_hlo(compiled.as_text()), calls, 1)
      phases = {"profile_" + k: v for k, v in hlo_profile.breakdown(ops).items()}
    except Exception as e:  # noqa: BLE001 - a profiler that fails here must not cost the row its figures
      phases = {"profile_error": f"{type(e).__name__}: {str(e)[:200]}"}
    state = holder["state"]
  return {
    **phases,
    "state": program.placement.one_copy(state),
    "flops_per_step": cost_flops(compiled),
    "compile_s": compile_s,
    "first_step_s": first_step_s,
    "seconds_per_step": seconds_per_step,
    "timed_steps": steps,
    "examples_per_s": B / seconds_per_step,
    "last_metrics": last,
  }


def measure_sampling(program, state, quick: bool) -> Dict[str, Any]:
  """Sampling costs, one compiled call per sample (`program.sampler`, as the loop and the CLI
  compile it), timed after a warm-up call. What is timed follows the family's sampling options:
  per token at two lengths where they have a `length`, per network evaluation at two step counts
  where they have `num_steps` (DDIM), per image else."""
  family = program.family
  variables = state.variables(ema=True)
  rng = jax.random.key(2)
  options = family.resolve_options(family.sample_options())
  fields = {f.name for f in dataclasses.fields(options)}
  if "length" in fields:
    return _sampling_per_token(program, variables, rng, options)
  if "num_steps" in fields and "sampler" in fields:
    return _sampling_ddim(program, variables, rng, options, quick)
  if family.output == "none":
    return {}
  n = 4 if quick else 16
  sample = program.sampler(n)
  seconds = _timed(lambda: jax.block_until_ready(sample(variables, rng)), 0.0, 1, 3)
  return {"sample_batch": n, "sample_s_per_image": seconds / n}


def _sampling_per_token(program, variables, rng, options) -> Dict[str, Any]:
  """Seconds per token of a sample of the block's eighth and of the whole block less one."""
  L = program.exp.data.block_size
  n = 1 if L >= 1024 else 4
  short, long = max(L // 8, 2), L - 1
  per_token = {}
  for length in (short, long):
    sample = program.sampler(n, dataclasses.replace(options, length=length))
    seconds = _timed(lambda sample=sample: jax.block_until_ready(sample(variables, rng)), 0.0, 2, 2)
    per_token[length] = seconds / length
  return dict(
    sample_batch=n,
    sample_s_per_token_short=per_token[short],
    sample_short_length=short,
    sample_s_per_token_long=per_token[long],
    sample_long_length=long,
    sample_per_token_long_over_short=per_token[long] / per_token[short],
  )


def _sampling_ddim(program, variables, rng, options, quick: bool) -> Dict[str, Any]:
  """DDIM at two step counts: the cost of one network evaluation and the fixed overhead."""
  # 4 sampler calls (two lengths, each warmed up): keep a CPU's share to minutes.
  n = 4 if quick or jax.devices()[0].platform != "cpu" else 2
  guided = (options.guidance_scale or 1.0) != 1.0
  many, few = (6, 2) if quick else (50, 10)
  times = {}
  for steps in (many, few):
    sample = program.sampler(n, dataclasses.replace(options, sampler="ddim", num_steps=steps))
    times[steps] = _timed(lambda sample=sample: jax.block_until_ready(sample(variables, rng)), 0.0, 1, 1)
  per_eval = (times[many] - times[few]) / (many - few)
  overhead = times[many] - many * per_eval
  return dict(
    sample_batch=n,
    sample_ddim_steps=many,
    sample_ddim_s=times[many],
    sample_s_per_image=times[many] / n,
    sample_unet_evals=many * (2 if guided else 1),
    sample_s_per_step=per_eval,
    sample_fixed_overhead_s=overhead,
    sample_overhead_fraction=overhead / times[many],
  )


def measure_checkpoint(state) -> Dict[str, Any]:
  """How long Checkpoints.save blocks the loop vs. how long the whole asynchronous save takes."""
  from genjax.core import checkpoint as ckpt_lib

  with tempfile.TemporaryDirectory() as workdir:
    checkpoints = ckpt_lib.Checkpoints(workdir, keep=1, async_save=True)
    checkpoints.save(1, state, {"step": 1})  # warm-up: Orbax's first save sets up its threads
    checkpoints.wait()
    t0 = time.perf_counter()
    checkpoints.save(2, state, {"step": 2})
    blocked = time.perf_counter() - t0
    checkpoints.wait()
    total = time.perf_counter() - t0
    checkpoints.close()
  size = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  return {"checkpoint_blocked_s": blocked, "checkpoint_total_s": total, "checkpoint_bytes": int(size)}


def measure_pipeline(exp, steps: int) -> Dict[str, Any]:
  """Dataset.batch throughput at the config's global batch, on its dataset when prepared."""
  data, used, reason = exp.data, exp.data.name, ""
  try:
    dataset = data_lib.load(data, data.train_split)
  except Exception as e:  # noqa: BLE001 - not prepared here: fall back to the embedded digits
    reason = f"{data.name} not available ({type(e).__name__}); measured on digits"
    used = "digits"
    dataset = data_lib.load(config_lib.Data(name="digits"), "train")
  rate = data_lib.pipeline_throughput(dataset, exp.train.batch_size, steps)
  return {"pipeline_dataset": used, "pipeline_examples_per_s": rate, "pipeline_note": reason}


def measure_loop(exp, steps_per_window: int, steps_per_call: int = 1) -> Dict[str, Any]:
  """A short genjax.train.loop.train run: its steady steps/s (log windows after the first, which
  holds the compilation) against the isolated step's rate gives the time spent outside the step.
  `steps_per_call` is the config's own (several steps per compiled call)."""
  from genjax.trainer import loop, writers

  steps_per_window = -(-steps_per_window // steps_per_call) * steps_per_call
  steps = 4 * steps_per_window
  exp = dataclasses.replace(
    exp,
    train=dataclasses.replace(
      exp.train,
      steps=steps,
      log_every=steps_per_window,
      eval_every=steps,
      checkpoint_every=steps,
      progress=False,
      steps_per_call=steps_per_call,
    ),
    # The learning-rate schedule of the standard run, cut off after `steps`.
    optim=dataclasses.replace(exp.optim, decay_steps=exp.optim.decay_steps or exp.train.steps),
    eval=dataclasses.replace(
      exp.eval,
      num_batches=1,
      batch_size=exp.train.batch_size,
      num_samples=8,
      sample_length=min(exp.eval.sample_length, 8),
    ),
  )
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    loop.train(exp, workdir)
    wall = time.perf_counter() - t0
    rates = [
      r["steps_per_sec"]
      for r in writers.read_metrics(workdir)
      if "steps_per_sec" in r and r["step"] > steps_per_window and r["steps_per_sec"] > 0
    ]
  return {
    "loop_steps": steps,
    "loop_steps_per_call": steps_per_call,
    "loop_wall_s": wall,
    "loop_steps_per_s": float(np.median(rates)) if rates else None,
  }
