"""python -m genjax.sample --workdir DIR --num N --out FILE [--seed S] [--prompt TEXT] ...

Draws N samples from a trained run's latest checkpoint (EMA weights when the run kept them).
Images go to a PNG grid (or raw arrays when FILE ends in .npy); text is printed and written.
Family-specific options (--prompt, --temperature, --sampler, ...) are passed to the family's
sample function when given.
"""

import argparse
import os
import sys

from genjax import cli

FAMILY_OPTIONS = {  # flag -> type; passed through to family.sample(variables, rng, n, **options)
    "length": int, "temperature": float, "top_k": int, "top_p": float,
    "sampler": str, "num_steps": int, "eta": float, "guidance_scale": float, "label": int,
}


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m genjax.sample", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--num", type=int, default=64, help="number of samples")
  parser.add_argument("--out", required=True, help="output file: .png grid, .npy arrays, or .txt for text")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no_ema", action="store_true", help="sample with the raw weights, not the EMA")
  parser.add_argument("--prompt", default=None, help="text models: the text to continue")
  for name, tp in FAMILY_OPTIONS.items():
    parser.add_argument(f"--{name}", type=tp, default=None)
  cli.add_distributed_flags(parser)
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  if args.num <= 0:
    cli.fail(f"--num={args.num} must be a positive number of samples.")
  out_dir = os.path.dirname(os.path.abspath(args.out))
  if not os.path.isdir(out_dir):
    cli.fail(f"--out {args.out}: the folder {out_dir} does not exist. Create it or write elsewhere.")
  if not args.out.endswith((".png", ".npy", ".txt")):
    cli.fail(f"--out {args.out} must end in .png (image grid), .npy (raw arrays) or .txt (text).")
  cli.setup_devices(args)
  cli.configure_logging()
  import time
  import jax
  import numpy as np
  from genjax.train import checkpoint, loop, writers
  try:
    exp, family, state, info = loop.restore(args.workdir)
  except (FileNotFoundError, checkpoint.CheckpointError, ValueError) as e:
    cli.fail(e)
  wanted = "text" if family.output == "text" else "image"
  if args.out.endswith(".txt" if wanted == "image" else ".png"):
    cli.fail(f"--out {args.out}: this run's family ({exp.family}) makes {wanted}s; write "
             f"{'a .png grid' if wanted == 'image' else 'a .txt file'} or .npy arrays.")
  options = {name: getattr(args, name) for name in FAMILY_OPTIONS if getattr(args, name) is not None}
  if args.prompt is not None:
    if family.output != "text":
      cli.fail(f"--prompt is for text models; this run's family ({exp.family}) makes images.")
    options["prompt"] = np.asarray(info.tokenizer.encode(args.prompt), np.int32)
  try:
    fn = jax.jit(lambda v, r: family.sample(v, r, args.num, **options))
    variables = state.variables(ema=not args.no_ema)
    start = time.perf_counter()
    samples = np.asarray(jax.device_get(fn(variables, jax.random.key(args.seed))))
  except TypeError as e:
    cli.fail(f"This family's sampler does not take one of {sorted(options)}: {e}")
  seconds = time.perf_counter() - start
  if args.out.endswith(".npy"):
    np.save(args.out, samples)
  elif family.output == "text":
    texts = [info.tokenizer.decode(row.tolist()) for row in samples]
    joined = "\n\n---\n\n".join(texts)
    print(joined)
    with open(args.out, "w") as f:
      f.write(joined)
  else:
    writers.save_image_grid(args.out, samples)
  print(f"wrote {args.num} samples to {args.out} in {seconds:.2f}s (including compilation)", file=sys.stderr)


if __name__ == "__main__":
  main()
