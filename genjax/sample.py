"""python -m genjax.sample --workdir DIR --num N --out FILE [--seed S] [--no_ema] [--OPTION VALUE ...]

Draws N samples from a trained run's newest readable checkpoint (EMA weights when the run kept
them); a damaged newer one is passed over with a warning and left where it is (only train moves it).
Images go to a PNG grid (or raw arrays when FILE ends in .npy); text is printed and written.
The run's family declares its sampling options (its SampleOptions dataclass); each is a flag:
"""

import argparse
import dataclasses
import os
import sys
import typing

from genjax import cli, errors


def options_help() -> str:
  """Every family's sampling options, read from the families' SampleOptions classes."""
  from genjax import families

  lines = []
  for name in families.names():
    for model_class, cls in families.get(name).SAMPLE_OPTIONS.items():
      fields = ", ".join(f"--{f.name}" for f in dataclasses.fields(cls)) or "(none)"
      lines.append(f"  {name} ({model_class}): {fields}")
  return "\n".join(lines)


def parse_options(cls, tokens):
  """The family's SampleOptions from ["--name", "value", "--name=value", ...] (ValueError if bad)."""
  from genjax import config as config_lib

  fields = {f.name: f for f in dataclasses.fields(cls)}
  hints = typing.get_type_hints(cls)
  values, i = {}, 0
  while i < len(tokens):
    token = tokens[i]
    if not token.startswith("--"):
      raise errors.ConfigError(f"Unexpected argument {token!r}: options are written --NAME VALUE.")
    name, eq, text = token[2:].partition("=")
    if name not in fields:
      known = ", ".join(f"--{n}" for n in fields) or "none"
      raise errors.ConfigError(f"--{name} is not a sampling option of this run's family; it takes: {known}.")
    if not eq:
      if i + 1 >= len(tokens):
        raise errors.ConfigError(f"--{name} needs a value.")
      i, text = i + 1, tokens[i + 1]
    try:
      values[name] = config_lib.convert_value(text, hints[name], f"--{name}")
    except config_lib.ConfigError as e:
      raise errors.ConfigError(str(e)) from e
    i += 1
  return cls(**values)


def parse(argv):
  """(args, the family's option tokens); one-paragraph exits for flags that cannot work."""
  parser = argparse.ArgumentParser(
    prog="python -m genjax.sample",
    description=__doc__,
    epilog="Sampling options by family:\n" + options_help(),
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--num", type=int, default=64, help="number of samples")
  parser.add_argument("--out", required=True, help="output file: .png grid, .npy arrays, or .txt for text")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no_ema", action="store_true", help="sample with the raw weights, not the EMA")
  cli.add_distributed_flags(parser)
  args, option_tokens = parser.parse_known_args(argv)
  if args.num <= 0:
    cli.fail(f"--num={args.num} must be a positive number of samples.")
  cli.check_seed(args.seed, "--seed")
  out_dir = os.path.dirname(os.path.abspath(args.out))
  if "://" not in args.out and not os.path.isdir(out_dir):
    cli.fail(f"--out {args.out}: the folder {out_dir} does not exist. Create it or write elsewhere.")
  if not args.out.endswith((".png", ".npy", ".txt")):
    cli.fail(f"--out {args.out} must end in .png (image grid), .npy (raw arrays) or .txt (text).")
  return args, option_tokens


def check_output(exp, family, out: str):
  """One-paragraph exits for a family that draws nothing, or an --out of the other kind."""
  if family.output == "none":
    cli.fail(
      f"This run's family ({exp.family}) is not a generative model and draws no samples; "
      "`python -m genjax.evaluate --workdir DIR` reports its test accuracy."
    )
  wanted = "text" if family.output == "text" else "image"
  if out.endswith(".txt" if wanted == "image" else ".png"):
    cli.fail(
      f"--out {out}: this run's family ({exp.family}) makes {wanted}s; write "
      f"{'a .png grid' if wanted == 'image' else 'a .txt file'} or .npy arrays."
    )


def check_writable(out: str):
  """Before sampling: an --out in a bucket whose service cannot be reached, or where nothing may
  be written (a probe object written and deleted beside it), fails here, not after the samples
  were drawn."""
  from genjax import paths

  if not paths.is_remote(out):
    return
  try:
    paths.check_reachable(out, "write --out")
    probe = paths.join(out.rsplit("/", 1)[0], f".genjax_write_probe_{os.getpid()}")
    paths.write_atomic(probe, b"genjax checks that it can write here\n")
    paths.path(probe).unlink()
  except errors.UserError as e:
    cli.fail(e)
  except Exception as e:  # noqa: BLE001 - each store raises its own types; all mean "cannot write"
    cli.fail(paths.storage_error(e, out, "write --out"))


def write(out: str, samples, family, layout=None):
  """`samples` as raw arrays (.npy), text (printed too) or a PNG grid, written atomically."""
  import io

  import numpy as np

  from genjax import paths
  from genjax.trainer import writers

  try:
    if out.endswith(".npy"):
      buffer = io.BytesIO()
      np.save(buffer, samples)
      paths.write_atomic(out, buffer.getvalue())
    elif family.output == "text":
      joined = "\n\n---\n\n".join(family.decode(row) for row in samples)
      print(joined)
      paths.write_atomic(out, joined)
    else:
      writers.save_image_grid(out, samples, layout=layout)
  except Exception as e:  # noqa: BLE001 - each store raises its own types
    cli.fail(paths.storage_error(e, out, "write --out"))


def main(argv=None):
  args, option_tokens = parse(sys.argv[1:] if argv is None else argv)
  cli.setup_devices(args)
  cli.configure_logging()
  import time

  import jax
  import numpy as np

  from genjax.families.base import check_options
  from genjax.trainer import workdir

  try:
    program, state = workdir.load(args.workdir)
  except errors.UserError as e:
    cli.fail(e)
  family = program.family
  check_output(program.exp, family, args.out)
  check_writable(args.out)
  try:
    options = check_options(family, parse_options(family.sample_options, option_tokens))
  except errors.ConfigError as e:
    names = ", ".join("--" + f.name for f in dataclasses.fields(family.sample_options)) or "none"
    cli.fail(f"{e} (sampling options of this run: {names}).")
  try:
    fn = program.sampler(args.num, options, fix="Ask for fewer with --num (runs with other --seed values draw more).")
    start = time.perf_counter()
    samples = np.asarray(jax.device_get(fn(state.variables(ema=not args.no_ema), jax.random.key(args.seed))))
  except errors.UserError as e:
    cli.fail(e)
  seconds = time.perf_counter() - start
  # labels cycle through the classes unless one was asked for: then the columns are not classes
  one_class = getattr(options, "label", None) is not None
  write(args.out, samples, family, None if one_class else family.layouts.get("samples"))
  print(
    f"wrote {args.num} samples of step {int(jax.device_get(state.step))} to {args.out} in {seconds:.2f}s "
    f"(including compilation; options "
    f"{dataclasses.asdict(options)})",
    file=sys.stderr,
  )


if __name__ == "__main__":
  main()
