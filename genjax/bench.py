"""Throughput, FLOPs, MFU, compile time, memory, sampling and checkpoint costs of every family.

    python -m genjax.bench [--quick] [--only NAME,...] [--out FILE.json] [--data_dir DIR] [--no-loop]
    python -m genjax.bench --nanogpt DIR --torch_python PY [--rounds 3]   (the CPU GPT beside nanoGPT)

For the standard config of each family (the experiments/ files, built with
genjax.config.load_config_file) the benchmark takes the loop's own compiled train call from
genjax.trainer.program (jit over a one-device mesh, keyed steps, state donated), feeds it synthetic
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

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from genjax import cli, families
from genjax import config as config_lib
from genjax import data as data_lib
from genjax import profile as profile_lib
from genjax.core.placement import place
from genjax.data.info import DataInfo
from genjax.trainer import program as program_lib

# Data-sheet dense peaks in FLOP/s by (device kind substring, dtype).
PEAK_FLOPS = {
  ("h200", "bfloat16"): 989e12,
  ("h100", "bfloat16"): 989e12,
  ("a100", "bfloat16"): 312e12,
  ("h200", "float32"): 67e12,
  ("h100", "float32"): 67e12,
  ("a100", "float32"): 19.5e12,
}


@dataclasses.dataclass(frozen=True)
class Entry:
  """One benchmarked config: a config file spec (relative to the repo root); the batch used on
  CPU; the test-size model."""

  config: str
  cpu_batch: int
  quick: Callable[[Any], Any]  # model Config -> test-size model Config
  quick_batch: int = 8  # the test-size batch (GANs: a multiple of n_critic * pack)
  note: str = ""
  cpu_bound: str = ""  # what holds the CPU step below the MFU target, printed when it is missed


def _tiny_gpt(m):
  return dataclasses.replace(m, num_layers=2, num_heads=2, width=64, dropout=0.0)


def _tiny_unet(m):
  return dataclasses.replace(m, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), dropout=0.0)


def _tiny_gan(m):
  if m.arch == "dcgan_mnist":
    return dataclasses.replace(m, g_widths=(64, 16), d_widths=(8, 32), latent_dim=16)
  if m.arch == "dcgan":
    return dataclasses.replace(m, g_widths=(64, 32, 16, 8), d_widths=(8, 16, 32, 64), latent_dim=16)
  return dataclasses.replace(m, g_widths=(32, 32, 32, 32), d_widths=(32, 32, 32, 32), latent_dim=16, n_critic=1)


def _tiny_vae(m):
  return dataclasses.replace(
    m, hidden=(32,), latents=(8,), conv_channels=(8, 16), train_samples=min(m.train_samples, 4)
  )


BENCHMARKS: Dict[str, Entry] = {
  "gpt_shakespeare_char": Entry("experiments/gpt_shakespeare_char.py", cpu_batch=8, quick=_tiny_gpt),
  "gpt2_small": Entry("experiments/gpt2_small.py", cpu_batch=1, quick=_tiny_gpt),
  "ddpm_mnist": Entry(
    "experiments/ddpm_mnist.py",
    cpu_batch=16,
    quick=_tiny_unet,
    cpu_bound="3x3 convolutions of 64-128 channels at 28x28 to 7x7: their backward pass "
    "(input and kernel gradients) runs at about a quarter of the matmul rate, the "
    "forward at about 0.4, with XLA's convolutions and with im2col products alike",
  ),
  "ddpm_cifar10": Entry("experiments/ddpm_cifar10.py", cpu_batch=4, quick=_tiny_unet),
  "dcgan_mnist": Entry("experiments/dcgan_mnist.py", cpu_batch=64, quick=_tiny_gan, quick_batch=10),
  "sngan_cifar10": Entry("experiments/sngan_cifar10.py", cpu_batch=10, quick=_tiny_gan, quick_batch=10),
  "vae_conv_fashion_mnist": Entry(
    "experiments/vae_conv_fashion_mnist.py",
    cpu_batch=128,
    quick=_tiny_vae,
    cpu_bound="a 4 GFLOP step of small layers (32-64 channels at 14x14 and 7x7): "
    "im2col copies, the likelihood and the update weigh as much as the matmuls",
  ),
  "vae_binarized_mnist": Entry(
    "experiments/vae_binarized_mnist.py:vae",
    cpu_batch=20,
    quick=_tiny_vae,
    note="the IWAE paper's one-layer VAE; the loop runs 100 steps per call (its config's steps_per_call)",
    cpu_bound="20-row matrices against 784x200 weights: each step streams every weight, its gradient and "
    "Adam's two moments through the cache several times (~16 MB), for 51 MFLOP",
  ),
  "iwae_binarized_mnist": Entry(
    "experiments/vae_binarized_mnist.py:iwae",
    cpu_batch=20,
    quick=_tiny_vae,
    cpu_bound="matrices of 20x50 samples by 200 units are too small to fill the cores' matmul kernels",
  ),
}


def _repo_path(spec: str) -> str:
  """experiments/X.py[:arg] relative to the working directory, else to the package's checkout."""
  path, sep, arg = spec.partition(":")
  if not os.path.exists(path):
    candidate = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path)
    if os.path.exists(candidate):
      path = candidate
  return path + sep + arg


def _load(spec: str) -> config_lib.Experiment:
  return config_lib.load_config_file(_repo_path(spec))


def experiment_for(
  name: str, quick: bool, on_cpu: bool, data_dir: Optional[str] = None, dtype: Optional[str] = None
) -> config_lib.Experiment:
  """The benchmarked Experiment: the standard config, its batch cut to `cpu_batch` on a CPU,
  shrunk to test size in quick mode; one device; no steps_per_call (one step per call);
  `dtype` replaces the config's compute dtype."""
  entry = BENCHMARKS[name]
  exp = _load(entry.config)
  train = dataclasses.replace(
    exp.train, steps_per_call=1, progress=False, compute_dtype=dtype or exp.train.compute_dtype
  )
  data = dataclasses.replace(exp.data, data_dir=data_dir or exp.data.data_dir)
  if quick:
    exp = dataclasses.replace(exp, model=entry.quick(exp.model))
    train = dataclasses.replace(train, batch_size=min(exp.train.batch_size, entry.quick_batch))
    if data_lib.describe(data).kind == "text":
      data = dataclasses.replace(data, block_size=32)
  elif on_cpu:
    train = dataclasses.replace(train, batch_size=min(exp.train.batch_size, entry.cpu_batch))
  return dataclasses.replace(exp, train=train, data=data, parallel=config_lib.Parallel(mode="jit", num_devices=1))


def synthetic_batch(info: DataInfo, batch: int, seed: int = 0) -> Dict[str, np.ndarray]:
  """A batch of the right shapes and ranges: tokens in [0, V), images in [-1, 1] (binary: +-1)."""
  r = np.random.default_rng(seed)
  if info.kind == "text":
    return {"tokens": r.integers(0, info.vocab_size, (batch, info.shape[0] + 1), dtype=np.int32)}
  image = r.uniform(-1, 1, (batch, *info.shape)).astype(np.float32)
  if info.binary:
    image = np.where(image > 0, 1.0, -1.0).astype(np.float32)
  return {"image": image, "label": r.integers(0, info.num_classes or 1, (batch,), dtype=np.int32)}


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------


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
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per device program
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


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
  """Compiles the loop's train call (genjax.trainer.program: the very call the loop runs) and
  times it on one synthetic batch; with `profile`, also where the step's time goes
  (genjax.profile: a trace of a few more steps)."""
  B = program.exp.train.batch_size
  host_batch = synthetic_batch(program.info, B)
  t0 = time.perf_counter()
  state = program.init_state()
  batch = program.put_batch(host_batch)
  rngs = [np.int32(i) for i in range(max_steps + 1)]  # the steps the keyed call draws its keys from
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
      ops = profile_lib.trace_ops(run, profile_lib.parse_hlo(compiled.as_text()), calls, 1)
      phases = {"profile_" + k: v for k, v in profile_lib.breakdown(ops).items()}
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


def measure_sampling(exp, family, state, info, quick: bool) -> Dict[str, Any]:
  """Sampling costs, one compiled call per sample, timed after a warm-up call. What is timed
  follows the family's sampling options: per token at two lengths where they have a `length`,
  per network evaluation at two step counts where they have `num_steps` (DDIM), per image else."""
  variables = state.variables(ema=True)
  rng = jax.random.key(2)
  out: Dict[str, Any] = {}
  block = lambda x: jax.block_until_ready(x)
  options = family.resolve_options(family.sample_options())
  fields = {f.name for f in dataclasses.fields(options)}
  if "length" in fields:
    L = exp.data.block_size
    n = 1 if L >= 1024 else 4
    short, long = max(L // 8, 2), L - 1
    per_token = {}
    for length in (short, long):
      opts = dataclasses.replace(options, length=length)
      seconds = _timed(lambda opts=opts: block(family.sample(variables, rng, n, opts)), 0.0, 2, 2)
      per_token[length] = seconds / length
    out.update(
      sample_batch=n,
      sample_s_per_token_short=per_token[short],
      sample_short_length=short,
      sample_s_per_token_long=per_token[long],
      sample_long_length=long,
      sample_per_token_long_over_short=per_token[long] / per_token[short],
    )
    return out
  n = 4 if quick else 16
  if "num_steps" in fields and "sampler" in fields:
    # 4 sampler calls (two lengths, each warmed up): keep a CPU's share to minutes.
    n = 4 if quick or jax.devices()[0].platform != "cpu" else 2
    guided = (options.guidance_scale or 1.0) != 1.0
    many, few = (6, 2) if quick else (50, 10)
    times = {}
    for steps in (many, few):
      opts = dataclasses.replace(options, sampler="ddim", num_steps=steps)
      times[steps] = _timed(lambda opts=opts: block(family.sample(variables, rng, n, opts)), 0.0, 1, 1)
    per_eval = (times[many] - times[few]) / (many - few)
    overhead = times[many] - many * per_eval
    out.update(
      sample_batch=n,
      sample_ddim_steps=many,
      sample_ddim_s=times[many],
      sample_s_per_image=times[many] / n,
      sample_unet_evals=many * (2 if guided else 1),
      sample_s_per_step=per_eval,
      sample_fixed_overhead_s=overhead,
      sample_overhead_fraction=overhead / times[many],
    )
    return out
  if family.output == "none":
    return out
  sample = jax.jit(family.sample, static_argnums=2)  # one compiled call, as the loop and CLI make it
  seconds = _timed(lambda: block(sample(variables, rng, n)), 0.0, 1, 3)
  out.update(sample_batch=n, sample_s_per_image=seconds / n)
  return out


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


# ----------------------------------------------------------------------------------------------
# Memory of the sharded step
# ----------------------------------------------------------------------------------------------

MEMORY_CONFIGS = ("experiments/gpt2.py:medium", "experiments/gpt2.py:large")
MEMORY_LAYOUTS = (("jit", 1), ("fsdp", 1), ("fsdp", 2))  # (mode, model_parallel): replicated, FSDP, FSDP + TP
MEMORY_DEVICES = 8


def measure_memory(spec: str, devices: int = MEMORY_DEVICES, batch: int = MEMORY_DEVICES) -> List[Dict[str, Any]]:
  """Per-device memory of the compiled train step of `spec` under each layout of MEMORY_LAYOUTS:
  the state's bytes per device (from the shardings) and XLA's memory analysis of the compiled
  step (arguments, outputs, temporaries). Compiles only: nothing is allocated or run."""
  exp = _load(spec)
  exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, batch_size=batch, steps_per_call=1))
  info = data_lib.describe(exp.data)
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
    mem = compiled.memory_analysis()
    get = lambda name, mem=mem: int(getattr(mem, name, 0) or 0)
    rows.append(
      {
        "config": spec,
        "parameters": params,
        "mode": mode,
        "model_parallel": model_parallel,
        "devices": devices,
        "batch": batch,
        "state_bytes_per_device": sharding_bytes(abstract, par.state_sharding),
        "argument_bytes": get("argument_size_in_bytes"),
        "output_bytes": get("output_size_in_bytes"),
        "temp_bytes": get("temp_size_in_bytes"),
        "alias_bytes": get("alias_size_in_bytes"),
        "compile_s": time.perf_counter() - t0,
      }
    )
    rows[-1]["total_bytes"] = (
      rows[-1]["argument_bytes"] + rows[-1]["output_bytes"] + rows[-1]["temp_bytes"] - rows[-1]["alias_bytes"]
    )
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


def format_memory(rows: List[Dict[str, Any]]) -> str:
  gib = lambda b: f"{b / 2**30:.2f}"
  lines = [
    "| model | parameters | layout | state (parameters and optimizer state) GiB/device | compiled step GiB/device "
    "(arguments / temporaries / outputs, aliased) |",
    "| --- | --- | --- | --- | --- |",
  ]
  for r in rows:
    layout = {("jit", 1): "replicated", ("fsdp", 1): "FSDP"}.get(
      (r["mode"], r["model_parallel"]), f"FSDP x tensor parallel {r['model_parallel']}"
    )
    lines.append(
      f"| {r['config'].split('/')[-1]} | {r['parameters'] / 1e6:.0f}M | {layout} ({r['devices']} devices) | "
      f"{gib(r['state_bytes_per_device'])} | {gib(r['total_bytes'])} ({gib(r['argument_bytes'])} / "
      f"{gib(r['temp_bytes'])} / {gib(r['output_bytes'])}, {gib(r['alias_bytes'])}) |"
    )
  return "\n".join(lines)


def memory_main(args) -> Dict[str, Any]:
  if jax.device_count() < MEMORY_DEVICES:
    import subprocess

    from genjax.cli import simulated_devices_xla_flags

    env = dict(os.environ, XLA_FLAGS=simulated_devices_xla_flags(MEMORY_DEVICES, os.environ.get("XLA_FLAGS", "")))
    if jax.devices()[0].platform != "cpu":
      raise SystemExit(f"--memory compiles for {MEMORY_DEVICES} devices; this machine has {jax.device_count()}.")
    sys.exit(subprocess.run([sys.executable, "-m", "genjax.bench", *sys.argv[1:]], env=env).returncode)
  rows = [
    row
    for spec in (args.memory_configs.split(",") if args.memory_configs else MEMORY_CONFIGS)
    for row in measure_memory(spec)
  ]
  result = {
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "jax": jax.__version__,
    "device": jax.devices()[0].platform,
    "memory": rows,
  }
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  print(format_memory(rows))
  return result


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------


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
  on_cpu = device.platform == "cpu"
  entry = BENCHMARKS[name]
  exp = experiment_for(name, quick, on_cpu, data_dir, dtype)
  standard = _load(entry.config)
  info = data_lib.describe(exp.data)
  program = program_lib.build(exp, info)
  family = program.family
  dtype = exp.train.compute_dtype
  row: Dict[str, Any] = {
    "name": name,
    "family": exp.family,
    "config": entry.config,
    "note": entry.note,
    "batch": exp.train.batch_size,
    "compute_dtype": dtype,
    "family_notes": family.notes,
  }
  min_time = min_time if min_time is not None else (0.5 if quick else 8.0)
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
  if on_cpu and entry.cpu_bound and row["mfu_measured"] < 0.40:
    row["mfu_note"] = entry.cpu_bound
  peak = data_sheet_peak(device, dtype)
  row["peak_flops_per_s"] = peak
  row["mfu_peak"] = achieved / peak if peak else None
  row.update(peak_memory(device))
  row.update(measure_pipeline(exp, steps=5 if quick else 50))
  row["pipeline_over_train"] = row["pipeline_examples_per_s"] / row["train_examples_per_s"]
  if sampling:
    row.update(measure_sampling(exp, family, state, info, quick))
  row.update(measure_checkpoint(state))
  row["loop_outside_step_fraction"] = None
  if with_loop:
    if row["pipeline_dataset"] != exp.data.name:
      row["loop_note"] = f"skipped: {exp.data.name} is not prepared"
    elif row["train_seconds_per_step"] > 2.0:
      row["loop_note"] = (
        f"skipped: one step takes {row['train_seconds_per_step']:.1f} s, next to which the "
        "loop's per-step work (milliseconds) is negligible"
      )
    else:
      window = max(3, min(20, int(4.0 / row["train_seconds_per_step"])))
      row.update(measure_loop(exp, window, standard.train.steps_per_call))
      if row.get("loop_steps_per_s"):
        row["loop_outside_step_fraction"] = max(0.0, 1.0 - row["loop_steps_per_s"] * row["train_seconds_per_step"])
  row.update(time_breakdown(row, standard.train.steps_per_call if with_loop else 1))
  return row


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


COLUMNS = [
  ("name", "{}", 22),
  ("batch", "{}", 5),
  ("train_examples_per_s", "{:.1f}", 9),
  ("flops_per_step", "{:.3g}", 9),
  ("mfu_measured", "{:.2f}", 5),
  ("mfu_peak", "{:.3f}", 6),
  ("first_step_s", "{:.1f}", 6),
  ("peak_memory_bytes", "{:.3g}", 8),
  ("pipeline_over_train", "{:.1f}", 8),
  ("sample_s_per_image", "{:.3g}", 8),
  ("sample_s_per_token_long", "{:.3g}", 8),
  ("checkpoint_blocked_s", "{:.3f}", 7),
  ("checkpoint_total_s", "{:.3f}", 7),
  ("loop_outside_step_fraction", "{:.3f}", 7),
]
HEADERS = [
  "config",
  "batch",
  "ex/s",
  "FLOP/step",
  "MFU",
  "MFUpk",
  "1st s",
  "mem B",
  "pipe/x",
  "s/img",
  "s/tok",
  "ckpt_blk",
  "ckpt_all",
  "outside",
]


def format_time_table(rows: List[Dict[str, Any]]) -> str:
  """Where each config's step time goes: ms per step of the compiled step, of making its batch
  on the host and of a step in the loop; and the shares of the step's op time by phase (with
  the share of matmuls and convolutions) from a profiler trace."""
  phases = list(profile_lib.PHASES)
  head = ["config", "step ms", "input ms", "loop ms"] + [p.split()[0][:8] for p in phases] + ["matmul"]
  widths = [22, 8, 8, 8] + [8] * len(phases) + [7]
  lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
  for row in rows:
    cells = [row["name"], row.get("time_step_ms"), row.get("time_input_ms"), row.get("time_loop_ms")]
    cells += [row.get(f"profile_{p}") for p in phases] + [row.get("profile_matmul")]
    text = []
    for i, (cell, w) in enumerate(zip(cells, widths)):
      if cell is None:
        text.append("-".rjust(w))
      elif i == 0:
        text.append(str(cell).rjust(w))
      elif i < 4:
        text.append(f"{cell:.3g}".rjust(w))
      else:
        text.append(f"{cell:.0%}".rjust(w))
    lines.append("  ".join(text))
  return "\n".join(lines)


def format_table(rows: List[Dict[str, Any]]) -> str:
  lines = ["  ".join(h.rjust(w) for h, (_, _, w) in zip(HEADERS, COLUMNS))]
  for row in rows:
    cells = []
    for key, fmt, width in COLUMNS:
      value = row.get(key)
      cells.append(("-" if value is None else fmt.format(value)).rjust(width))
    lines.append("  ".join(cells))
  return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# The CPU GPT beside nanoGPT (karpathy/nanoGPT, a clone the user points to), alternating runs
# ----------------------------------------------------------------------------------------------

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
    raise RuntimeError(f"{' '.join(command[:4])} ... exited with {done.returncode}: " + " | ".join(tail))
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
    raise RuntimeError(f"nanoGPT printed no iteration times past iteration {skip}; its output ended: {text[-300:]}")
  return {"ms_per_step": float(np.median(times)), "steps": len(times), "last_loss": found[-1][1]}


def genjax_ms_per_step(iters: int, window: int, data_dir: Optional[str]) -> Dict[str, Any]:
  """genjax's CPU GPT in its own training loop (a `python -m genjax.train` process, the config as
  it is, including its config.parallel.cpu_devices): the median wall time per step over the loop's
  log windows after the first (which holds the compilation)."""
  from genjax.trainer import writers

  workdir = tempfile.mkdtemp(prefix="genjax-bench-gpt-")
  command = [sys.executable, "-m", "genjax.train", "--config", _repo_path(GENJAX_CPU_GPT), "--workdir", workdir]
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
    raise RuntimeError("the genjax run logged no steps/s after its first window")
  return {
    "ms_per_step": float(np.median([1e3 / r for r in rates])),
    "steps": iters - window,
    "last_loss": records[-1]["loss"],
  }


def nanogpt_main(args) -> Dict[str, Any]:
  """Alternating runs of genjax's CPU GPT and nanoGPT's CPU shakespeare_char setting (same model,
  batch and optimizer), `--rounds` of each, so both see the same machine minute by minute."""
  if not os.path.isfile(os.path.join(args.nanogpt, "train.py")):
    raise config_lib.ConfigError(
      f"--nanogpt={args.nanogpt!r} is not a nanoGPT checkout (no train.py there). Clone "
      "https://github.com/karpathy/nanoGPT, run its data/shakespeare_char/prepare.py, and pass the clone's path."
    )
  if not os.path.isfile(os.path.join(args.nanogpt, "data", "shakespeare_char", "train.bin")):
    raise config_lib.ConfigError(
      f"nanoGPT's shakespeare_char data is not prepared in {args.nanogpt}: copy Tiny Shakespeare's input.txt "
      "to data/shakespeare_char/ there and run `python data/shakespeare_char/prepare.py` in the clone."
    )
  iters = 40 if args.quick else 300
  runs = []
  for r in range(args.rounds):
    for name in ("genjax", "nanogpt"):
      t0 = time.perf_counter()
      if name == "genjax":
        result = genjax_ms_per_step(iters, 10 if args.quick else 25, args.data_dir)
      else:
        result = nanogpt_ms_per_iter(args.nanogpt, args.torch_python, iters, skip=10)
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
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  return result


# ----------------------------------------------------------------------------------------------
# Does decoding a folder of JPEGs keep up with the train step? (data.name="folder")
# ----------------------------------------------------------------------------------------------

# (label, config, batch on a CPU, test-size model): the step rates a 64x64 image folder must feed
DECODE_VERSUS = (
  ("DCGAN 64x64 (dcgan_celeba64.py)", "experiments/dcgan_celeba64.py", 64, _tiny_gan),
  ("DDPM U-Net of ddpm_cifar10.py on 64x64", "experiments/ddpm_cifar10.py", 8, _tiny_unet),
)


def decode_main(args) -> Dict[str, Any]:
  """Images/s decoding generated 64x64 JPEGs (genjax.data.files.FolderSource, per thread count)
  beside the images/s the DCGAN and DDPM train steps consume at 64x64 (synthetic batches), in
  one run so both see the same machine."""
  from genjax.data import bench_folder, files

  seconds = 1.0 if args.quick else 4.0
  rows = []
  with tempfile.TemporaryDirectory(prefix="genjax-bench-decode-") as folder:
    bench_folder.write_jpegs(folder, 64 if args.quick else 512, 64)
    for threads in dict.fromkeys((1, files.default_threads())):
      rate = bench_folder.images_per_second(folder, 64, threads, 64, seconds)
      rows.append({"what": f"decode 64x64 JPEGs, {threads} thread(s)", "images_per_s": rate})
      print(f"[decode] {rows[-1]['what']}: {rate:,.0f} images/s", file=sys.stderr, flush=True)
  info = DataInfo(name="folder", kind="image", shape=(64, 64, 3))
  for label, spec, batch, tiny in DECODE_VERSUS:
    exp = _load(spec)
    exp = dataclasses.replace(
      exp,
      model=tiny(exp.model) if args.quick else exp.model,
      train=dataclasses.replace(exp.train, batch_size=8 if args.quick else batch, steps_per_call=1, progress=False),
      parallel=config_lib.Parallel(mode="jit", num_devices=1),
    )
    train = measure_train(exp, families.build(exp, info), info, min_time=seconds, max_steps=3 if args.quick else 50)
    rows.append(
      {
        "what": f"train step: {label}, batch {exp.train.batch_size}",
        "images_per_s": train["examples_per_s"],
        "seconds_per_step": train["seconds_per_step"],
      }
    )
    print(f"[decode] {rows[-1]['what']}: {train['examples_per_s']:,.1f} images/s", file=sys.stderr, flush=True)
  slowest_decode = min(r["images_per_s"] for r in rows if r["what"].startswith("decode"))
  fastest_step = max(r["images_per_s"] for r in rows if r["what"].startswith("train"))
  result = {
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "quick": args.quick,
    "cpu_count": os.cpu_count(),
    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    "rows": rows,
    "decode_over_fastest_step": slowest_decode / fastest_step,
  }
  for r in rows:
    print(f"{r['what']:<60} {r['images_per_s']:>12,.1f} images/s")
  print(
    f"decoding (one thread) / the fastest step's consumption: {result['decode_over_fastest_step']:.1f}x "
    f"(load average {result['load_average']})"
  )
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1, default=float)
  return result


def main(argv=None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(prog="python -m genjax.bench", description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="test-size models, a few steps (CI)")
  parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
  parser.add_argument("--out", default=None, help="write the results as JSON to this file")
  parser.add_argument(
    "--data_dir",
    default=None,
    help="prepared TFDS datasets for the pipeline and loop figures (default: "
    "data.data_dir, $GENJAX_DATA_DIR, ~/tensorflow_datasets)",
  )
  parser.add_argument(
    "--no-loop",
    dest="loop",
    action="store_false",
    help="skip the short loop.train run (done in full mode on prepared datasets)",
  )
  parser.add_argument(
    "--dtype",
    default=None,
    choices=("float32", "bfloat16"),
    help="the compute dtype of every config (default: each config's own)",
  )
  parser.add_argument(
    "--min_time",
    type=float,
    default=None,
    help="seconds of steady-state step timing per config (default 8; 0.5 with --quick)",
  )
  parser.add_argument(
    "--memory",
    action="store_true",
    help=f"instead: per-device memory of the compiled step of GPT-2 medium and large on "
    f"{MEMORY_DEVICES} devices (simulated on a CPU), replicated vs FSDP vs FSDP + tensor parallel",
  )
  parser.add_argument("--memory_configs", default=None, help="with --memory: comma-separated config specs")
  parser.add_argument(
    "--decode",
    action="store_true",
    help="instead: images/s decoding a folder of 64x64 JPEGs beside the images/s the DCGAN and "
    "DDPM train steps consume at 64x64",
  )
  parser.add_argument(
    "--nanogpt",
    default=None,
    metavar="DIR",
    help="instead: the CPU GPT beside a clone of karpathy/nanoGPT in DIR (its shakespeare_char data "
    "prepared), alternating runs, ms per step of each",
  )
  parser.add_argument("--torch_python", default="python", help="with --nanogpt: the Python that has torch")
  parser.add_argument("--rounds", type=int, default=3, help="with --nanogpt: runs of each, alternating")
  cli.add_cache_flag(parser)
  args = parser.parse_args(argv)
  cli.setup_compilation_cache(args)
  if args.nanogpt:
    try:
      return nanogpt_main(args)
    except (config_lib.ConfigError, RuntimeError) as e:
      cli.fail(str(e))
  if args.memory:
    return memory_main(args)
  if args.decode:
    return decode_main(args)
  names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
  unknown = [n for n in names if n not in BENCHMARKS]
  if unknown:
    parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}.")
  device = jax.devices()[0]
  rates: Dict[str, float] = {}
  rows = []
  for name in names:
    t0 = time.perf_counter()
    try:
      row = run_one(name, args.quick, args.loop and not args.quick, rates, args.data_dir, args.dtype, args.min_time)
    except Exception as e:  # noqa: BLE001 - one config's failure is reported, the others still run
      if args.quick:
        raise
      row = {"name": name, "error": f"{type(e).__name__}: {e}"}
      print(f"[{name}] FAILED: {row['error']}", file=sys.stderr, flush=True)
    row["bench_s"] = time.perf_counter() - t0
    row["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    rows.append(row)
    print(f"[{name}] done in {row['bench_s']:.1f} s", file=sys.stderr, flush=True)
    result = _result(args.quick, device, rates, rows)
    if args.out:  # after every config, so a long run's finished rows are kept
      with open(args.out, "w") as f:
        json.dump(result, f, indent=1, default=float)
  print(format_table(rows))
  print("\nWhere a step's time goes (ms per step; phases as shares of the step's op time, genjax.profile):")
  print(format_time_table([r for r in rows if "error" not in r]))
  for row in rows:
    if row.get("mfu_note"):
      print(f"  {row['name']}: MFU below 0.40 on this CPU: {row['mfu_note']}")
  print(
    f"device {device.platform} ({getattr(device, 'device_kind', '')}), load average "
    f"{result['load_average']}, matmul FLOP/s " + ", ".join(f"{k} {v:.3g}" for k, v in rates.items())
  )
  return result


def _result(quick: bool, device, rates, rows) -> Dict[str, Any]:
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


if __name__ == "__main__":
  main()
