"""python -m genjax.train --config experiments/NAME.py[:arg] --workdir DIR [--config.a.b=v ...]

Trains an experiment with the shared loop, resuming from WORKDIR's newest readable checkpoint (an
unreadable one is moved to WORKDIR/checkpoints_corrupt/; when none is readable it stops, and
--restart_from_scratch starts again from step 0 beside them). With no --config it runs
experiments/default.py: a VAE on scikit-learn's bundled 8x8 digits (no download), a few minutes
on a laptop CPU. `--list` names the experiments with one line each;
`--print_config` prints the resolved experiment, its parameter count, FLOPs per step and memory
per device, and exits without training.
Any field of the experiment's dataclasses is set with --config.GROUP.FIELD=VALUE (e.g.
--config.train.steps=100, --config.model.ch_mult=1,2,2 for a tuple, --config.data.crop_size=None).
"""

import argparse
import ast
import glob
import os
import sys

from genjax import cli

EXPERIMENTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")
DEFAULT_CONFIG = os.path.join(EXPERIMENTS_DIR, "default.py")


def list_experiments(directory: str = EXPERIMENTS_DIR) -> list:
  """(file name, the first line of its docstring) of every experiment file, read without
  importing them (nothing starts JAX)."""
  rows = []
  for path in sorted(glob.glob(os.path.join(directory, "*.py"))):
    with open(path, encoding="utf-8") as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())  # the first paragraph, on one line
    rows.append((os.path.basename(path), first if len(first) <= 110 else first[:107].rstrip() + "..."))
  return rows


def parse(argv):
  parser = argparse.ArgumentParser(
    prog="python -m genjax.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--config", default=None, help="experiment file: experiments/NAME.py[:arg] (--list names them)")
  parser.add_argument("--list", action="store_true", help="list the experiment files with one line each, and exit")
  parser.add_argument(
    "--print_config",
    action="store_true",
    help="print the resolved config (overrides applied), parameter count, FLOPs per step and memory per "
    "device of the compiled train step, and exit without training",
  )
  parser.add_argument(
    "--workdir",
    default=None,
    help="where checkpoints, metrics and samples go "
    "(default: runs/<experiment name>); rerunning with the same workdir resumes",
  )
  parser.add_argument(
    "--restart_from_scratch",
    action="store_true",
    help="when no checkpoint of the workdir can be read (they are kept in WORKDIR/checkpoints_corrupt/), "
    "train from step 0 in it instead of refusing; a readable checkpoint is always resumed",
  )
  cli.add_distributed_flags(parser)
  args, rest = parser.parse_known_args(argv)
  overrides = [a for a in rest if a.startswith("--config.")]
  unknown = [a for a in rest if not a.startswith("--config.")]
  if unknown:
    import difflib

    known = [o for a in parser._actions for o in a.option_strings]
    hints = {u: difflib.get_close_matches(u.split("=")[0], known, n=1) for u in unknown}
    cli.fail(
      "Unknown arguments: "
      + ", ".join(f"{u}" + (f" (did you mean {h[0]}?)" if h else "") for u, h in hints.items())
      + ". Config fields are set as --config.GROUP.FIELD=VALUE, e.g. --config.train.steps=100."
    )
  return args, overrides


def main(argv=None):
  args, overrides = parse(sys.argv[1:] if argv is None else argv)
  if args.list:
    rows = list_experiments()
    width = max(len(name) for name, _ in rows)
    for name, line in rows:
      print(f"experiments/{name:<{width}}  {line}")
    print("\nA file's docstring gives its commands and variants (experiments/NAME.py:VARIANT).")
    return
  from genjax import config as config_lib

  try:
    spec = args.config or DEFAULT_CONFIG
    exp = config_lib.apply_overrides(config_lib.load_config_file(spec), overrides)
    config_lib.validate(exp)  # before JAX starts: config.parallel.cpu_devices decides its devices
  except config_lib.ConfigError as e:
    cli.fail(e)
  cli.setup_devices(args, exp.parallel.cpu_devices, exp.parallel.keep_cpu_memory)
  cli.configure_logging()
  if args.print_config:
    return print_config(exp)
  from genjax import errors
  from genjax.trainer import loop

  workdir = args.workdir or os.path.join("runs", exp.name)
  try:
    summary = loop.train(exp, workdir, restart_from_scratch=args.restart_from_scratch)
  except errors.UserError as e:  # what the user can fix; anything else is a bug and keeps its traceback
    cli.fail(e, code=e.exit_code)
  except loop.Preempted as e:
    cli.fail(e, code=loop.PREEMPTED_EXIT_CODE)
  import json

  import jax

  if jax.process_index() == 0:
    print(human_summary(exp, summary), file=sys.stderr)
  print(json.dumps(summary, default=str))


def _metrics_line(metrics: dict, keep: int = 4) -> str:
  """The loss-like metrics first, then the others, at most `keep` of them."""
  order = sorted(metrics, key=lambda k: (not k.replace("eval_", "").endswith("loss"), k))
  return ", ".join(f"{k} {metrics[k]:.4g}" for k in order[:keep] if isinstance(metrics[k], (int, float)))


def human_summary(exp, summary: dict) -> str:
  """What a run did, its headline metrics, where its files are and what to run next (stderr;
  the JSON on stdout is for scripts)."""
  from genjax import paths

  workdir, step, started = summary["workdir"], summary["step"], summary["started_at"]
  if step == started:
    return (
      f"{workdir} is already at step {step} (config.train.steps = {exp.train.steps}): nothing to train. "
      f"Raise --config.train.steps to continue it, or give a new --workdir to start again."
    )
  minutes = summary["seconds"] / 60
  lines = [
    f"Trained {exp.name} from step {started} to {step} in {minutes:.1f} min "
    f"({summary['compile_s']:.0f} s of it compiling the train step) on {summary['devices']} device(s).",
  ]
  if summary["train"]:
    lines.append(f"  last logged: {_metrics_line(summary['train'])}")
  if summary["eval"]:
    lines.append(f"  evaluation:  {_metrics_line(summary['eval'])}")
  lines.append(f"  workdir:     {workdir} (checkpoints/, metrics.jsonl, tensorboard/)")
  for ext in ("png", "txt"):
    latest = paths.join(workdir, "samples", f"step_{step:08d}.{ext}")
    if paths.exists(latest):
      lines.append(f"  samples:     {latest}")
  output = summary.get("output", "image")
  commands = [f"python -m genjax.evaluate --workdir {workdir}"]
  if output != "none":
    out = "samples.txt" if output == "text" else "samples.png"
    commands.insert(0, f"python -m genjax.sample --workdir {workdir} --num 16 --out {out}")
  lines += [f"  {'next:' if i == 0 else '':<13}{c}" for i, c in enumerate(commands)]
  lines.append(f"               (--config.train.steps above {step} continues this run)")
  return "\n".join(lines)


def print_config(exp):
  """--print_config: the resolved experiment and what its compiled train step costs."""
  from genjax import config as config_lib
  from genjax import errors
  from genjax.perf import describe

  print(config_lib.to_json(exp))
  print(f"compiling the train step of {exp.name} to read its FLOPs and memory ...", file=sys.stderr, flush=True)
  try:
    figures = describe.describe(exp)
  except errors.UserError as e:
    cli.fail(e)
  print("\n".join(describe.format_description(figures)))


if __name__ == "__main__":
  main()
