"""Throughput, FLOPs, MFU, compile time, memory, sampling and checkpoint costs of every family.

    python -m genjax.bench [--quick] [--only NAME,...] [--out FILE.json] [--data_dir DIR] [--no-loop]
    python -m genjax.bench --memory [--memory_configs SPEC,...]   (per-device memory, 8 devices)
    python -m genjax.bench --decode [--quick]   (decoding a folder of JPEGs beside the 64x64 steps)
    python -m genjax.bench --nanogpt DIR --torch_python PY [--rounds 3]   (the CPU GPT beside nanoGPT)
    python -m genjax.bench --startup [--startup_configs SPEC,...] [--startup_steps 20]   (what the
        compilation cache saves: train, sample and evaluate, first and second run)

What each figure means: genjax.perf.benchmark; the measurements are genjax.perf's modules. This
command parses the flags and calls them. `--quick` shrinks every model to test size and runs a few
steps: it is what CI runs (tests/test_bench.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any, Dict, List

import jax

from genjax import cli, errors
from genjax.perf import benchmark, decode, memory, peers, startup
from genjax.perf.registry import BENCHMARKS


def build_parser() -> argparse.ArgumentParser:
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
  _add_mode_flags(parser)
  cli.add_cache_flag(parser)
  return parser


def _add_mode_flags(parser: argparse.ArgumentParser):
  """The other benchmarks, each instead of the standard one: --memory, --decode, --nanogpt."""
  parser.add_argument(
    "--memory",
    action="store_true",
    help=f"instead: per-device memory of the compiled step of GPT-2 medium and large on "
    f"{memory.MEMORY_DEVICES} devices (simulated on a CPU), replicated vs FSDP vs FSDP + tensor parallel",
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
  parser.add_argument(
    "--diffusers",
    action="store_true",
    help="instead: the DDPM U-Net train step beside diffusers' UNet2DModel of the same shape in PyTorch "
    "(--torch_python must have torch and diffusers), alternating runs, ms per step and parameters of each",
  )
  parser.add_argument(
    "--diffusers_configs",
    default=None,
    help=f"with --diffusers: comma-separated config specs (default {','.join(peers.DIFFUSERS_CONFIGS)})",
  )
  parser.add_argument("--diffusers_steps", type=int, default=20, help="with --diffusers: timed steps per run")
  parser.add_argument(
    "--torch_python", default="python", help="with --nanogpt or --diffusers: the Python that has torch"
  )
  parser.add_argument("--rounds", type=int, default=3, help="with --nanogpt or --diffusers: runs of each, alternating")
  parser.add_argument(
    "--startup",
    action="store_true",
    help="instead: seconds to the first step and to the end of short train runs, and of sample and "
    "evaluate, first (empty compilation cache) and second run (reading it back)",
  )
  parser.add_argument("--startup_configs", default=None, help="with --startup: comma-separated config specs")
  parser.add_argument("--startup_steps", type=int, default=20, help="with --startup: train steps per run")


MODES = ("memory", "decode", "nanogpt", "diffusers", "startup")  # each instead of the standard benchmark
MODE_FLAGS = {"memory_configs": "memory", "diffusers_configs": "diffusers", "startup_configs": "startup"}


def check_flags(args):
  """One-paragraph exits for flags that cannot work: two benchmarks at once, a mode's flag without
  its mode, counts below 1, a --min_time that is not a non-negative number of seconds."""
  modes = [m for m in MODES if getattr(args, m)]
  if len(modes) > 1:
    cli.fail(f"--{' and --'.join(modes)} are separate benchmarks: run one at a time.")
  for flag, mode in MODE_FLAGS.items():
    value = getattr(args, flag)
    if value is not None and mode not in modes:
      cli.fail(f"--{flag} chooses the configs of --{mode}; add --{mode}, or leave --{flag} out.")
    if value is not None and not [v for v in value.split(",") if v.strip()]:
      cli.fail(f"--{flag}={value!r} names no config: give comma-separated specs, e.g. experiments/gpt2.py:medium.")
  for flag in ("rounds", "diffusers_steps", "startup_steps"):
    if getattr(args, flag) < 1:
      cli.fail(f"--{flag}={getattr(args, flag)} must be a positive integer.")
  if args.min_time is not None and not 0 <= args.min_time < float("inf"):
    cli.fail(f"--min_time={args.min_time} must be a non-negative number of seconds (default 8; 0.5 with --quick).")


def main(argv=None) -> Dict[str, Any]:
  parser = build_parser()
  args = parser.parse_args(argv)
  check_flags(args)
  if args.diffusers:  # the configs compared decide, before JAX starts, whether memory is kept mapped
    cli.tune_malloc(peers.diffusers_configs_keep_memory(args.diffusers_configs))
  cli.setup_compilation_cache(args)
  if args.nanogpt:
    try:
      return peers.run(args.nanogpt, args.torch_python, args.rounds, args.quick, args.data_dir, args.out)
    except errors.UserError as e:
      cli.fail(str(e))
  if args.diffusers:
    try:
      return peers.diffusers_run(args.diffusers_configs, args.torch_python, args.rounds, args.diffusers_steps, args.out)
    except errors.UserError as e:
      cli.fail(str(e))
  if args.memory:
    try:
      return _memory(args)
    except errors.UserError as e:
      cli.fail(str(e))
  if args.decode:
    return decode.run(args.quick, args.out)
  if args.startup:
    try:
      return startup.run(args.startup_configs, args.startup_steps, args.out)
    except errors.UserError as e:
      cli.fail(str(e))
  names = _names(args, parser)
  return benchmark.run(
    names, args.quick, args.loop and not args.quick, args.data_dir, args.dtype, args.min_time, args.out
  )


def _names(args, parser: argparse.ArgumentParser) -> List[str]:
  """The benchmarks --only names (by default all, but for the accelerator-only ones on a CPU at
  full size); an unknown one is a usage error."""
  on_cpu = jax.default_backend() == "cpu" and not args.quick
  everything = [n for n, entry in BENCHMARKS.items() if not (on_cpu and entry.accelerator_only)]
  names = [n.strip() for n in args.only.split(",") if n.strip()] or everything
  unknown = [n for n in names if n not in BENCHMARKS]
  if unknown:
    parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}.")
  return names


def _memory(args) -> Dict[str, Any]:
  """--memory on this process's devices; with fewer than it compiles for on a CPU, this command
  again in a child process that simulates them."""
  if jax.device_count() < memory.MEMORY_DEVICES:
    flags = cli.simulated_devices_xla_flags(memory.MEMORY_DEVICES, os.environ.get("XLA_FLAGS", ""))
    env = dict(os.environ, XLA_FLAGS=flags)
    if jax.devices()[0].platform != "cpu":
      raise SystemExit(f"--memory compiles for {memory.MEMORY_DEVICES} devices; this machine has {jax.device_count()}.")
    sys.exit(subprocess.run([sys.executable, "-m", "genjax.bench", *sys.argv[1:]], env=env).returncode)
  return memory.run(args.memory_configs, args.out)


if __name__ == "__main__":
  main()
