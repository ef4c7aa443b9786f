"""Feature statistics of a dataset split, computed once and cached as .npz.

The cache is keyed by what determines the statistics: the split's images (`source_key`) and the
feature network. `source_key` names the images by the dataset, the split and the preprocessing
that makes them (binarize; for your own folder and tfds:NAME also image_size, channels and
crop_size), and by where they come from: for a folder (data.name="folder") its resolved path, the
holdout and a fingerprint of its image files (relative names, sizes and modification times: one
listing, no file read), so another folder, or an image added, removed or rewritten, is another
key; for tfds:NAME the builder's name, config and version. The file
`$GENJAX_HOME/reference_stats/<dataset>_<split>_<feature net>_<hash of the key>.npz` holds the
key itself (checked on reading), the float64 mean and covariance of the whole split's features
(streamed, see frechet.RunningStats), the number of examples, the feature network's fingerprint
(a cache written with other weights is recomputed), and the features of the first `keep`
examples, which KID and precision/recall compare against.
"""

import dataclasses
import hashlib
import io
import json
import os
from typing import Iterable, Optional

import numpy as np

from genjax import errors, paths
from genjax.data.fingerprint import folder_fingerprint, source_key  # noqa: F401 - re-exported
from genjax.metrics.features import FeatureNet
from genjax.metrics.frechet import RunningStats

DEFAULT_KEEP = 10_000


@dataclasses.dataclass
class ReferenceStats:
  mean: np.ndarray  # f64[D]
  cov: np.ndarray  # f64[D,D]
  count: int
  features: np.ndarray  # f32[min(count, keep), D]: for KID and precision/recall
  fingerprint: str
  source: str = ""  # source_key as JSON: the images the statistics are of


def cache_path(source: dict, net_name: str, cache_dir: Optional[str] = None) -> str:
  """Where the statistics of the images `source` (a source_key) under `net_name` are cached."""
  folder = cache_dir or paths.join(paths.genjax_home(), "reference_stats")
  safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "-" for c in s)  # noqa: E731
  digest = hashlib.sha256(_canonical(source).encode()).hexdigest()[:12]
  return paths.join(folder, f"{safe(source['dataset'])}_{safe(source['split'])}_{safe(net_name)}_{digest}.npz")


def _canonical(source: dict) -> str:
  return json.dumps(source, sort_keys=True)


def compute(batches: Iterable[dict], net: FeatureNet, keep: int = DEFAULT_KEEP) -> ReferenceStats:
  """Statistics of `batches` ({"image", optional "mask"}) streamed through `net`."""
  stats, kept, num_kept = RunningStats(net.dim), [], 0
  for batch in batches:
    mask = np.asarray(batch.get("mask", np.ones(len(batch["image"]))))
    features, _ = net.apply(batch["image"])
    stats.update(features, mask)
    real = features[mask > 0]
    if num_kept < keep:
      kept.append(real[: keep - num_kept].astype(np.float32))
      num_kept += len(kept[-1])
  features = np.concatenate(kept) if kept else np.zeros((0, net.dim), np.float32)
  return ReferenceStats(stats.mean, stats.cov, stats.count, features, net.fingerprint)


def save(path: str, ref: ReferenceStats):
  buffer = io.BytesIO()
  np.savez(
    buffer,
    mean=ref.mean,
    cov=ref.cov,
    count=ref.count,
    features=ref.features,
    fingerprint=np.array(ref.fingerprint),
    source=np.array(ref.source),
  )
  paths.makedirs(paths.path(path).parent)
  paths.write_atomic(path, buffer.getvalue())


def load(path: str) -> ReferenceStats:
  with np.load(io.BytesIO(paths.read_bytes(path)), allow_pickle=False) as f:
    source = str(f["source"]) if "source" in f.files else ""
    return ReferenceStats(f["mean"], f["cov"], int(f["count"]), f["features"], str(f["fingerprint"]), source)


def reference_stats(
  data_cfg,
  split: str,
  net: FeatureNet,
  keep: int = DEFAULT_KEEP,
  batch_size: int = 500,
  cache_dir: Optional[str] = None,
  log=print,
) -> ReferenceStats:
  """The cached statistics of `split` of the dataset `data_cfg` (a genjax.config.Data), computed
  and saved on first use or when the feature network's weights changed (keyed by source_key)."""
  key = source_key(data_cfg, split)
  source, path = _canonical(key), cache_path(key, net.name, cache_dir)
  if paths.exists(path):
    ref = load(path)
    if ref.source == source and ref.fingerprint == net.fingerprint and len(ref.features) >= min(keep, ref.count):
      return ref
    log(
      f"Reference statistics {path} were computed with other weights, of other images or with fewer kept features; recomputing."
    )
  from genjax import data

  dataset = data.load(data_cfg, split)
  log(
    f"Computing {net.name} reference statistics of {data_cfg.name}/{split} "
    f"({dataset.num_examples} examples) into {path} (once)."
  )
  import sys

  from tqdm import tqdm

  batches = tqdm(
    dataset.eval_batches(batch_size),
    total=-(-dataset.num_examples // batch_size),
    desc=f"reference statistics {data_cfg.name}/{split}",
    unit="batch",
    file=sys.stderr,
    mininterval=1.0 if os.isatty(2) else 30.0,
    dynamic_ncols=True,
  )
  ref = dataclasses.replace(compute(batches, net, keep), source=source)
  save(path, ref)
  return ref


def score_samples(images, net: FeatureNet, ref: ReferenceStats, name: str = "samples") -> dict:
  """Frechet distance of `images` (f32[N,H,W,C] in [-1, 1]) to `ref`, and the fraction of them
  in each class of the feature network's classifier."""
  from genjax.metrics import frechet

  images = np.asarray(images, np.float32)
  if images.ndim != 4 or not np.isfinite(images).all() or images.min() < -1.001 or images.max() > 1.001:
    raise errors.ConfigError(f"{name}: expected finite images f32[N,H,W,C] in [-1, 1], got shape {images.shape}.")
  stats, counts = RunningStats(net.dim), np.zeros(net.num_classes, np.int64)
  for start in range(0, len(images), 1000):
    feats, logits = net.apply(images[start : start + 1000])
    stats.update(feats)
    counts += np.bincount(np.argmax(np.asarray(logits), -1), minlength=net.num_classes)
  fractions = counts / counts.sum()
  return {
    "fd_samples": frechet.frechet_distance(ref.mean, ref.cov, stats.mean, stats.cov),
    "num_samples": int(len(images)),
    "class_fractions": [round(float(f), 4) for f in fractions],
    "class_min_fraction": float(fractions.min()),
  }


def main(argv=None):
  """python -m genjax.metrics.reference_stats --dataset mnist --split train [--compare test]
  [--noise N] [--samples FILE.npy] [--feature_net NAME]: computes (or reads) the cached statistics
  of a split and prints, as JSON, the Frechet distance to another split (the floor a perfect model
  reaches), to N images of uniform noise in [-1, 1] (a ceiling), and to images saved as a .npy
  array f32[N,H,W,C] in [-1, 1] (e.g. another implementation's samples), with the class spread the
  feature network's classifier assigns them."""
  import argparse
  import json
  import sys

  import numpy as np

  from genjax import cli
  from genjax.config import Data

  parser = argparse.ArgumentParser(prog="python -m genjax.metrics.reference_stats", description=main.__doc__)
  parser.add_argument("--dataset", required=True)
  parser.add_argument("--split", default="train")
  parser.add_argument("--compare", default=None, help="another split: print the FD between the two")
  parser.add_argument("--noise", type=int, default=0, help="print the FD to this many uniform-noise images")
  parser.add_argument("--feature_net", default=None, help="default: by dataset (genjax.metrics.features)")
  parser.add_argument("--classifier_dir", default=None)
  parser.add_argument("--inception_weights", default=None)
  parser.add_argument("--cache_dir", default=None)
  parser.add_argument("--samples", default=None, help="a .npy of images f32[N,H,W,C] in [-1, 1] to compare")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  from genjax import data
  from genjax.metrics import features, frechet

  log = lambda m: print(m, file=sys.stderr)  # noqa: E731
  try:
    net = features.get(
      args.feature_net or features.default_for(args.dataset),
      weights=args.inception_weights,
      classifier_dir=args.classifier_dir,
    )
    cfg = Data(name=args.dataset)
    ref = reference_stats(cfg, args.split, net, cache_dir=args.cache_dir, log=log)
    out = {"dataset": args.dataset, "split": args.split, "feature_net": net.name, "count": ref.count}
    if args.compare:
      other = reference_stats(cfg, args.compare, net, cache_dir=args.cache_dir, log=log)
      out[f"fd_{args.split}_vs_{args.compare}"] = frechet.frechet_distance(ref.mean, ref.cov, other.mean, other.cov)
    if args.noise:
      shape = data.load(cfg, args.split).info.shape
      rng = np.random.default_rng(args.seed)
      stats = frechet.RunningStats(net.dim)
      for start in range(0, args.noise, 1000):
        images = rng.uniform(-1, 1, (min(1000, args.noise - start), *shape)).astype(np.float32)
        stats.update(net.apply(images)[0])
      out[f"fd_{args.split}_vs_uniform_noise"] = frechet.frechet_distance(ref.mean, ref.cov, stats.mean, stats.cov)
    if args.samples:
      out.update(score_samples(np.load(args.samples), net, ref, args.samples))
  except errors.UserError as e:
    cli.fail(e)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
