"""Where a compiled step's time goes: a jax.profiler trace of a few calls, read back with
jax.profiler.ProfileData (no TensorBoard or xprof needed) and matched to the compiled HLO.

    python -m genjax.profile --config experiments/X.py[:ARG] [--batch B] [--steps_per_call K]
                             [--calls N] [--top N] [--data_dir DIR]

The trace, the phases (forward, backward, optimizer, random numbers, copies, other) and the
tables are genjax.perf.hlo_profile's; this command applies its flags to one config and prints them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import jax

from genjax import cli, errors
from genjax import config as config_lib
from genjax.perf import hlo_profile


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m genjax.profile", description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="experiments/X.py[:ARG]")
  parser.add_argument("--batch", type=int, default=None, help="train.batch_size (default: the config's)")
  parser.add_argument("--steps_per_call", type=int, default=None, help="default: the config's")
  parser.add_argument("--calls", type=int, default=5, help="compiled calls traced")
  parser.add_argument("--top", type=int, default=15, help="largest operations listed")
  cli.add_cache_flag(parser)
  return parser


def check_flags(args):
  """One-paragraph exits for counts that cannot work (0 is not "the config's": leave the flag out)."""
  for flag, value in (("--batch", args.batch), ("--steps_per_call", args.steps_per_call)):
    if value is not None and value < 1:
      cli.fail(f"{flag}={value} must be a positive integer; leave it out for the config's own.")
  if args.calls < 1:
    cli.fail(f"--calls={args.calls} must be a positive number of compiled calls to trace (default 5).")
  if args.top < 1:
    cli.fail(f"--top={args.top} must be a positive number of operations to list (default 15).")


def experiment(args) -> config_lib.Experiment:
  """The config of --config with --batch and --steps_per_call applied, on one device."""
  exp = config_lib.load_config_file(args.config)
  train = dataclasses.replace(
    exp.train,
    batch_size=args.batch or exp.train.batch_size,
    steps_per_call=args.steps_per_call or exp.train.steps_per_call,
  )
  return dataclasses.replace(exp, train=train, parallel=config_lib.Parallel(mode="jit", num_devices=1))


def main(argv=None):
  args = build_parser().parse_args(argv)
  check_flags(args)
  cli.setup_compilation_cache(args)
  try:
    exp = experiment(args)
    ops, wall = hlo_profile.profile_experiment(exp, args.calls)
  except errors.UserError as e:
    cli.fail(str(e))
  print(
    f"{args.config}: batch {exp.train.batch_size}, {exp.train.steps_per_call} step(s) per call, "
    f"{wall * 1e3:.3f} ms per step (wall), {jax.devices()[0].device_kind}"
  )
  print(hlo_profile.format_profile(ops, args.top))
  sys.stdout.flush()


if __name__ == "__main__":
  main()
