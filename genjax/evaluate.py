"""python -m genjax.evaluate --workdir DIR [--metrics fd,kid,pr,is,modes] [--num_samples N]
                            [--feature_net NAME] [--reference_split SPLIT] [--OPTION VALUE ...]
                            [--config.a.b=VALUE ...]

Evaluates a trained run's newest readable checkpoint (EMA weights when the run kept them).

Without --metrics: the family's own full evaluation on the run's evaluation split (e.g. a VAE's
NLL bound, a transformer's bits per character, a classifier's accuracy). Image families without
one (GANs) get the default sample metrics of their dataset: `modes` on stacked_mnist, `fd` in the
default feature network otherwise; other families without one get their eval_step's mean over the
whole split.

With --metrics: draws --num_samples images with the family's sampler (its sampling options, as
for python -m genjax.sample, may follow: e.g. --sampler ddim --num_steps 50) and compares them
with a dataset split in a feature network's space:
  fd     Frechet distance (FID with --feature_net inception)      genjax.metrics.frechet
  kid    kernel distance, unbiased (x 1000 is customary)          genjax.metrics.kid
  pr     precision and recall, k=3 nearest neighbours             genjax.metrics.precision_recall
  is     Inception Score of the network's class probabilities     genjax.metrics.inception_score
  modes  Stacked-MNIST modes and KL to uniform (MNIST classifier) genjax.metrics.stacked_mnist
The reference statistics are cached (genjax.metrics.reference_stats). The default feature network
is the dataset's own classifier for MNIST and Fashion-MNIST (experiments/classifier_*.py) and
FID's Inception-v3 otherwise (weights: $GENJAX_INCEPTION_WEIGHTS or --inception_weights).

`--config.a.b=VALUE` changes the run's experiment for this evaluation only (settings that leave the
parameters alone, e.g. --config.model.clip_denoised=false for a diffusion bound without the x0
clip); the overrides are recorded with the result. One that changes what the checkpoint holds
(parameter shapes, optimizer state, EMA on or off) is refused, naming it, before any array is read.
Nothing under WORKDIR/checkpoints/ is ever written, moved or deleted: a damaged newest checkpoint is
passed over with a warning and the one before it is evaluated (the result records its step).

The JSON result is printed and appended to WORKDIR/eval.jsonl.
"""

import argparse
import datetime
import json
import os
import sys
import time

from genjax import cli, errors

METRICS = ("fd", "kid", "pr", "is", "modes")
ALIASES = {"fid": "fd", "precision": "pr", "recall": "pr", "precision_recall": "pr", "mode": "modes"}


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="python -m genjax.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--workdir", required=True, help="a run of python -m genjax.train")
  parser.add_argument(
    "--metrics",
    default=None,
    help=f"comma-separated sample metrics: {','.join(METRICS)} (default: the family's own evaluation)",
  )
  parser.add_argument(
    "--num_samples",
    type=int,
    default=None,
    help="samples to draw (default: 50000 with Inception features, as published FIDs; "
    "10000 with a classifier's; 26000 for modes, as PacGAN)",
  )
  parser.add_argument("--feature_net", default=None, help="inception, classifier_<dataset> (default: by dataset)")
  parser.add_argument(
    "--reference_split", default=None, help="dataset split compared with (default: the training split)"
  )
  parser.add_argument(
    "--batch_size", type=int, default=None, help="sampling and evaluation batch (default: the run's eval batch)"
  )
  parser.add_argument(
    "--max_examples",
    type=int,
    default=None,
    help="the family's own evaluation on only the first N examples of the split "
    "(e.g. a diffusion model's full T-step bound, which costs T network calls per image)",
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no_ema", action="store_true", help="evaluate the raw weights, not the EMA")
  parser.add_argument("--keep", type=int, default=10_000, help="feature vectors kept for kid and pr")
  parser.add_argument("--inception_weights", default=None, help="path of pt_inception-2015-12-05-6726825d.pth")
  parser.add_argument("--classifier_dir", default=None, help="workdir of the classifier run used as feature network")
  parser.add_argument(
    "--cache_dir", default=None, help="reference statistics cache (default $GENJAX_HOME/reference_stats)"
  )
  parser.add_argument("--no_log", action="store_true", help="do not append the result to WORKDIR/eval.jsonl")
  cli.add_distributed_flags(parser)
  return parser


def parse(argv):
  """(args, the sample metrics asked for); one-paragraph exits for flags that cannot work."""
  args, rest = _parser().parse_known_args(argv)
  args.overrides = [t for t in rest if t.startswith("--config.")]
  args.option_tokens = [t for t in rest if not t.startswith("--config.")]
  metrics = _metric_names(args.metrics)
  _check_flags(args, metrics)
  return args, metrics


def _metric_names(text):
  """The metrics --metrics names, aliases resolved, in order (none without the flag)."""
  metrics = []
  if text is not None:
    for name in (m.strip().lower() for m in text.split(",") if m.strip()):
      name = ALIASES.get(name, name)
      if name not in METRICS:
        import difflib

        close = difflib.get_close_matches(name, METRICS + tuple(ALIASES), n=1)
        cli.fail(
          f"Unknown metric {name!r}{f' (did you mean {close[0]}?)' if close else ''}. "
          f"--metrics takes a comma-separated list of {', '.join(METRICS)}; leave it out for "
          "the family's own evaluation."
        )
      if name not in metrics:
        metrics.append(name)
    if not metrics:
      cli.fail("--metrics is empty: name at least one of " + ", ".join(METRICS) + ".")
  return metrics


def _check_flags(args, metrics):
  if args.max_examples is not None and args.max_examples < 1:
    cli.fail(f"--max_examples={args.max_examples}: evaluate at least 1 example, or leave it out for the whole split.")
  if args.max_examples is not None and metrics:
    cli.fail("--max_examples limits the family's own evaluation; with --metrics use --num_samples.")
  if args.num_samples is not None and args.num_samples < 2:
    cli.fail(f"--num_samples={args.num_samples}: at least 2 samples are needed.")
  cli.check_seed(args.seed, "--seed")
  if args.batch_size is not None and args.batch_size < 1:
    cli.fail(f"--batch_size={args.batch_size} must be a positive number of examples.")
  if args.keep < 4:
    cli.fail(
      f"--keep={args.keep}: keep at least 4 feature vectors (precision and recall compare each with its 3 "
      "nearest neighbours; the default is 10000)."
    )
  if args.option_tokens and not metrics:
    cli.fail(
      f"Unknown arguments {' '.join(args.option_tokens)}: sampling options are for --metrics (the family's own "
      "evaluation takes none)."
    )
  if "://" not in args.workdir and not os.path.isdir(args.workdir):
    cli.fail(
      f"--workdir {args.workdir} does not exist. Pass the folder a `python -m genjax.train "
      f"--workdir DIR` run wrote (it holds config.json and checkpoints/)."
    )


def family_evaluation(program, state, args) -> dict:
  """The family's `evaluate` over the whole evaluation split, else the program's eval mean (the
  one the loop logs: each batch weighted by its real examples)."""
  import jax
  import numpy as np

  from genjax import data
  from genjax.data import datasets

  exp, family = program.exp, program.family
  batch_size = args.batch_size or exp.eval.batch_size or exp.train.batch_size
  if args.max_examples is not None:  # bound the work, not only the average: no batch of padding
    batch_size = min(batch_size, args.max_examples)
  program.check_fits(batch_size, "examples", "Lower --batch_size (examples are evaluated --batch_size at a time).")
  dataset = data.load(exp.data, exp.data.eval_split)
  rng = jax.random.key(args.seed)
  if args.no_ema:
    state = state.replace(ema_params=None)
  batches = datasets.first_examples(dataset.eval_batches(batch_size), args.max_examples)
  total = min(dataset.num_examples, args.max_examples or dataset.num_examples)
  real = lambda batch: int(np.sum(batch["mask"])) if "mask" in batch else len(next(iter(batch.values())))  # noqa: E731
  batches = _progress(batches, total, "evaluating", "example", real)
  if family.evaluate is not None:
    result = family.evaluate(state, batches, rng)
    return {
      k: (v if isinstance(v, int) else float(v) if np.ndim(v) == 0 else np.asarray(v).tolist())
      for k, v in result.items()
    }
  means, weight = program.eval_means(state, batches, rng)
  return means | {"num_examples": int(weight)}


def compute_rate(flops: float, seconds: float, program, log) -> dict:
  """The evaluation's FLOPs (XLA's count) against this device's matmul rate, measured now: how
  far the evaluation ran from the time its FLOPs need at that rate (1.0 = as fast as a large
  matmul). One line on stderr, the figures for the JSON."""
  import jax

  from genjax.perf.measure import matmul_rate

  dtype = program.exp.train.compute_dtype
  rate = matmul_rate(dtype, jax.local_devices()[0])
  bound = flops / rate
  log(
    f"evaluation: {flops:.3g} FLOP in {seconds:.1f} s, compilation included ({flops / seconds:.3g} FLOP/s); a "
    f"{dtype} matmul here runs at {rate:.3g} FLOP/s (measured now), so these FLOPs need {bound:.3g} s at least: "
    f"{seconds / bound:.2f}x that."
  )
  return {
    "flops": flops,
    "seconds": round(seconds, 3),
    "flop_per_s": flops / seconds,
    "matmul_flop_per_s": rate,
    "matmul_bound_seconds": round(bound, 3),
    "x_matmul_bound": round(seconds / bound, 3),
  }


def _progress(iterable, total: int, desc: str, unit: str, size=None):
  """The items of `iterable`, with a progress bar and an ETA on stderr (stdout carries the JSON)
  that counts `size(item)` units (examples, samples; default 1) once the consumer is done with
  an item, i.e. when it asks for the next."""
  from tqdm import tqdm

  bar = tqdm(
    total=total,
    desc=desc,
    unit=unit,
    dynamic_ncols=True,
    file=sys.stderr,
    mininterval=1.0 if os.isatty(2) else 30.0,
  )
  try:
    for item in iterable:
      yield item
      bar.update(size(item) if size else 1)
  finally:
    bar.close()


def draw_samples(program, variables, rng, num: int, batch_size: int, options=None):
  """Yields batches of samples (numpy, in [-1, 1]) totalling exactly `num`."""
  import jax
  import numpy as np

  sample = program.sampler(batch_size, options, fix="Lower --batch_size (samples are drawn --batch_size at a time).")
  for i, start in enumerate(range(0, num, batch_size)):
    images = np.asarray(jax.device_get(sample(variables, jax.random.fold_in(rng, i))))
    yield images[: num - start]


def _check_makes_images(program):
  exp, family, info = program.exp, program.family, program.info
  if family.output == "none":
    raise errors.ConfigError(
      f"This run's family ({exp.family}) is not a generative model and has no samples: leave "
      "out --metrics to get its own evaluation (a classifier's test accuracy)."
    )
  if family.output != "image" or info.kind != "image":
    raise errors.ConfigError(
      f"Sample metrics compare images; this run's family ({exp.family}) makes {family.output}. "
      "Leave out --metrics for its own evaluation (e.g. bits per character)."
    )


def _num_samples(exp, metrics, args) -> int:
  """--num_samples, else what published numbers use: 50,000 with Inception features (CIFAR-size
  data), 10,000 with a classifier's (their reference splits hold 10,000 to 60,000 images),
  PacGAN's 26,000 for modes alone."""
  from genjax.metrics import features, stacked_mnist

  inception = (
    any(m != "modes" for m in metrics) and (args.feature_net or features.default_for(exp.data.name)) == "inception"
  )
  return args.num_samples or (
    stacked_mnist.PACGAN_NUM_SAMPLES if metrics == ["modes"] else 50_000 if inception else 10_000
  )


def _judges(program, metrics, args, log):
  """(feature network, its reference statistics, Stacked-MNIST mode counter): None where unused."""
  import numpy as np

  from genjax.metrics import features, reference_stats, stacked_mnist

  exp, info = program.exp, program.info
  net = ref = counter = None
  if any(m != "modes" for m in metrics):
    options = {"weights": args.inception_weights, "classifier_dir": args.classifier_dir}
    net = features.get(args.feature_net or features.default_for(exp.data.name), **options)
    split = args.reference_split or exp.data.train_split
    ref = reference_stats.reference_stats(exp.data, split, net, keep=args.keep, cache_dir=args.cache_dir, log=log)
  if "modes" in metrics:
    if info.shape[-1] != 3:
      raise errors.ConfigError(
        f"modes counts Stacked-MNIST modes in 3-channel samples; {exp.data.name} has shape {info.shape}."
      )
    mnist = features.get("classifier_mnist", classifier_dir=args.classifier_dir)
    counter = stacked_mnist.ModeCounter(lambda x: np.argmax(mnist.apply(x)[1], -1))
  return net, ref, counter


def _tally(draws, net, counter, metrics, keep: int) -> dict:
  """Feature statistics, kept features, class probabilities and labels of every drawn batch."""
  import jax
  import numpy as np

  from genjax.metrics import frechet

  out = {"stats": frechet.RunningStats(net.dim) if net else None, "kept": [], "probs": []}
  out["classes"] = np.zeros(net.num_classes if net else 0, np.int64)  # the classifier's label of each sample
  drawn = 0
  for images in draws:
    if not np.isfinite(images).all():
      raise errors.ConfigError("The model's samples contain NaN or inf; the checkpoint is broken or diverged.")
    if net is not None:
      feats, logits = net.apply(images)
      out["stats"].update(feats)
      if drawn < keep:
        out["kept"].append(feats[: keep - drawn])
      if "is" in metrics:
        out["probs"].append(np.asarray(jax.nn.softmax(logits, -1)))
      out["classes"] += np.bincount(np.argmax(np.asarray(logits), -1), minlength=len(out["classes"]))
    if counter is not None:
      counter.update(images)
    drawn += len(images)
  return out


def _scores(tally, net, ref, counter, metrics, args) -> dict:
  import numpy as np

  from genjax.metrics import frechet, inception_score, kid, precision_recall

  result = {}
  if "fd" in metrics:
    result["fd"] = frechet.frechet_distance(tally["stats"].mean, tally["stats"].cov, ref.mean, ref.cov)
  if net is not None and net.name.startswith("classifier_"):
    # How the dataset's classifier labels the samples: a collapsed generator piles them in a few classes.
    fractions = tally["classes"] / max(tally["classes"].sum(), 1)
    result["class_fractions"] = [round(float(f), 4) for f in fractions]
    result["class_min_fraction"] = float(fractions.min())
  if "kid" in metrics:
    result.update(kid.kernel_distance(ref.features, np.concatenate(tally["kept"]), seed=args.seed))
  if "pr" in metrics:
    real = ref.features[: args.keep]
    result.update(precision_recall.precision_recall(real, np.concatenate(tally["kept"])[: len(real)]))
  if "is" in metrics:
    result.update(inception_score.inception_score(np.concatenate(tally["probs"])))
  if counter is not None:
    modes = counter.result()
    result.update({"modes": modes["modes"], "kl": modes["kl"]})
  return result


def sample_metrics(program, state, metrics, args, log, options) -> dict:
  """The --metrics of samples drawn with `options`, against the reference split's statistics."""
  import jax

  exp = program.exp
  _check_makes_images(program)
  num = _num_samples(exp, metrics, args)
  batch_size = min(args.batch_size or exp.eval.batch_size or exp.train.batch_size, num)  # never more than asked
  program.check_fits(batch_size, "samples", "Lower --batch_size (samples are drawn --batch_size at a time).")
  net, ref, counter = _judges(program, metrics, args, log)
  start = time.perf_counter()
  draws = draw_samples(
    program, state.variables(ema=not args.no_ema), jax.random.key(args.seed), num, batch_size, options
  )
  tally = _tally(_progress(draws, num, "sampling", "sample", len), net, counter, metrics, args.keep)
  result = _scores(tally, net, ref, counter, metrics, args)
  details = {"num_samples": num, "sample_seconds": round(time.perf_counter() - start, 1)}
  if net is not None:
    details.update(
      {
        "feature_net": net.name,
        "reference": f"{exp.data.name}/{args.reference_split or exp.data.train_split}",
        "reference_count": ref.count,
      }
    )
  return {"metrics": result, **details}


def run(args, metrics, log) -> tuple:
  """(program, state, result): the run read back and its evaluation (the family's own, or the
  sample metrics; a family with neither gets its dataset's default sample metrics)."""
  import dataclasses

  from genjax.families.base import check_options
  from genjax.sample import parse_options
  from genjax.trainer import workdir

  program, state = workdir.load(args.workdir, overrides=args.overrides)
  exp, family = program.exp, program.family
  if not metrics and family.evaluate is None and family.output == "image":
    metrics = ["modes"] if exp.data.name == "stacked_mnist" else ["fd"]
    log(f"{exp.family} defines no evaluation of its own: computing {','.join(metrics)} from samples.")
  if not metrics:
    start = time.perf_counter()
    result = family_evaluation(program, state, args)
    out = {"metrics": result, "split": exp.data.eval_split}
    if result.get("flops"):  # families that count their evaluation's FLOPs
      out["compute"] = compute_rate(result.pop("flops"), time.perf_counter() - start, program, log)
    return program, state, out
  options = check_options(family, parse_options(family.sample_options, args.option_tokens))
  out = sample_metrics(program, state, metrics, args, log, options)
  return program, state, {**out, "sample_options": dataclasses.asdict(options)}


def main(argv=None):
  args, metrics = parse(sys.argv[1:] if argv is None else argv)
  cli.setup_devices(args)
  cli.configure_logging()
  import jax

  from genjax import paths

  log = lambda message: print(message, file=sys.stderr)  # noqa: E731 - stdout carries the JSON
  start = time.perf_counter()
  try:
    program, state, out = run(args, metrics, log)
  except errors.UserError as e:  # what the user can fix; anything else is a bug and keeps its traceback
    cli.fail(e)
  exp = program.exp
  record = {
    "workdir": str(paths.path(args.workdir)),
    "experiment": exp.name,
    "family": exp.family,
    "dataset": exp.data.name,
    "step": int(jax.device_get(state.step)),
    "ema": not args.no_ema and state.ema_params is not None,
    **out,
    **({"overrides": args.overrides} if args.overrides else {}),
    "seconds": round(time.perf_counter() - start, 1),
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
  }
  text = json.dumps(record)
  print(text)
  if not args.no_log and jax.process_index() == 0:
    try:
      paths.append_line(paths.join(args.workdir, "eval.jsonl"), text)
    except Exception as e:  # noqa: BLE001 - each store raises its own types
      cli.fail(paths.storage_error(e, args.workdir, "append eval.jsonl to the workdir"))


if __name__ == "__main__":
  main()
