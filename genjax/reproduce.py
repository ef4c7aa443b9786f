"""python -m genjax.reproduce gpu --out DIR [--data_dir EXPORTS] [--budget_s 540] [--only ITEMS] [--dry_run]

The GPU suite: what one accelerator can measure in about nine minutes, compiles included, each
item time-boxed in its own process, its results written the moment it ends, so a failure or a
timeout loses nothing already measured:

  bench        python -m genjax.bench for gpt2_small and ddpm_cifar10 in bfloat16 and float32:
               MFU (data-sheet peak and this run's matmul rate), examples or tokens per second,
               compile time, peak device memory
  shakespeare  nanoGPT's shakespeare_char (experiments/gpt_shakespeare_char.py, 5000 steps):
               validation loss on nanoGPT's split (target <= 1.47) and wall time
  classifier   the MNIST classifier the Stacked MNIST modes are counted with
  pacgan1/2    PacGAN's Stacked MNIST DCGAN and PacDCGAN2 (experiments/pacgan_stacked_mnist.py:1|2)
               at the paper's length if it fits, else as many steps as the box allows (a SIGTERM
               at the box's end checkpoints the run): modes and KL over 26,000 samples
  iwae         (when time is left) the IWAE paper's one-layer VAE, as many steps as fit, k=5000 NLL
               on the first 1000 test images
  llama        (only when --only names it) python -m genjax.bench for llama_1b, Llama 3.2 1B's
               architecture (experiments/llama_1b.py), in bfloat16: tokens/s, MFU, peak memory
  dit          (only when --only names it) the same for dit_xl2, DiT-XL/2 on SD latents
               (experiments/dit_imagenet256.py): images/s, MFU, peak memory

Everything it reads travels with the working tree: datasets as a portable export
(python -m genjax.data.export --datasets mnist,tiny_shakespeare,binarized_mnist --out EXPORTS),
so no TFDS is needed where it runs. DIR/results.jsonl gets one JSON object per item,
DIR/results.md the rows for experiments/RESULTS.md, DIR/<item>/ the workdirs and logs.
`--dry_run` runs every item with tiny models and a few steps (what the test suite runs on a CPU).
"""

from __future__ import annotations

import argparse
import os
import sys

from genjax import cli
from genjax.perf import gpu_suite


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="python -m genjax.reproduce",
    description=__doc__.split("\n\n")[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog=__doc__,
  )
  items = [i.name for i in gpu_suite.ITEMS]
  parser.add_argument("suite", choices=("gpu",))
  parser.add_argument("--out", required=True, help="where results, workdirs and logs go")
  parser.add_argument("--data_dir", default=None, help="the portable dataset export (or prepared TFDS datasets)")
  parser.add_argument("--budget_s", type=float, default=540.0, help="the whole suite's wall-clock budget")
  parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(items)}")
  parser.add_argument("--dry_run", action="store_true", help="tiny models, a few steps (CPU test of the suite)")
  cli.add_cache_flag(parser)
  return parser


def chosen_items(args) -> list:
  """The items --only names (by default, every item but those run only by name); an unknown one,
  a --data_dir that does not exist or a --budget_s that is not positive is one error paragraph."""
  items = [i.name for i in gpu_suite.ITEMS]
  if not 0 < args.budget_s < float("inf"):
    cli.fail(f"--budget_s={args.budget_s} must be a positive number of seconds (the whole suite's; default 540).")
  names = [n.strip() for n in args.only.split(",") if n.strip()] or [i.name for i in gpu_suite.ITEMS if i.default]
  unknown = sorted(set(names) - set(items))
  if unknown:
    cli.fail(f"--only: unknown item(s) {', '.join(unknown)}; the suite has {', '.join(items)}.")
  if args.data_dir and not os.path.isdir(args.data_dir):
    cli.fail(
      f"--data_dir {args.data_dir} does not exist: export the datasets there first (python -m "
      "genjax.data.export --datasets mnist,tiny_shakespeare,binarized_mnist --out DIR)."
    )
  return names


def main(argv=None):
  args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
  cli.setup_compilation_cache(args)
  names = chosen_items(args)
  gpu_suite.run(names, args.out, args.data_dir, args.dry_run, args.budget_s)


if __name__ == "__main__":
  main()
