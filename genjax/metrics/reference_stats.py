"""Feature statistics of a dataset split, computed once and cached as .npz.

The cache key is (dataset, split, feature network): the file
`$GENJAX_HOME/reference_stats/<dataset>_<split>_<feature net>.npz` holds the float64 mean and
covariance of the whole split's features (streamed, see frechet.RunningStats), the number of
examples, the feature network's fingerprint (a cache written with other weights is recomputed),
and the features of the first `keep` examples, which KID and precision/recall compare against.
"""

import dataclasses
import os
from typing import Iterable, Optional

import numpy as np

from genjax.metrics.features import FeatureNet, genjax_home
from genjax.metrics.frechet import RunningStats

DEFAULT_KEEP = 10_000


@dataclasses.dataclass
class ReferenceStats:
  mean: np.ndarray        # f64[D]
  cov: np.ndarray         # f64[D,D]
  count: int
  features: np.ndarray    # f32[min(count, keep), D]: for KID and precision/recall
  fingerprint: str


def cache_path(dataset: str, split: str, net_name: str, cache_dir: Optional[str] = None) -> str:
  folder = cache_dir or os.path.join(genjax_home(), "reference_stats")
  safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "-" for c in s)  # noqa: E731
  return os.path.join(folder, f"{safe(dataset)}_{safe(split)}_{safe(net_name)}.npz")


def compute(batches: Iterable[dict], net: FeatureNet, keep: int = DEFAULT_KEEP) -> ReferenceStats:
  """Statistics of `batches` ({"image", optional "mask"}) streamed through `net`."""
  stats, kept, num_kept = RunningStats(net.dim), [], 0
  for batch in batches:
    mask = np.asarray(batch.get("mask", np.ones(len(batch["image"]))))
    features, _ = net.apply(batch["image"])
    stats.update(features, mask)
    real = features[mask > 0]
    if num_kept < keep:
      kept.append(real[:keep - num_kept].astype(np.float32))
      num_kept += len(kept[-1])
  features = np.concatenate(kept) if kept else np.zeros((0, net.dim), np.float32)
  return ReferenceStats(stats.mean, stats.cov, stats.count, features, net.fingerprint)


def save(path: str, ref: ReferenceStats):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  partial = path + ".partial.npz"
  np.savez(partial, mean=ref.mean, cov=ref.cov, count=ref.count, features=ref.features,
           fingerprint=np.array(ref.fingerprint))
  os.replace(partial, path)


def load(path: str) -> ReferenceStats:
  with np.load(path, allow_pickle=False) as f:
    return ReferenceStats(f["mean"], f["cov"], int(f["count"]), f["features"], str(f["fingerprint"]))


def reference_stats(data_cfg, split: str, net: FeatureNet, keep: int = DEFAULT_KEEP,
                    batch_size: int = 500, cache_dir: Optional[str] = None,
                    log=print) -> ReferenceStats:
  """The cached statistics of `split` of the dataset `data_cfg` (a genjax.config.Data), computed
  and saved on first use or when the feature network's weights changed."""
  path = cache_path(data_cfg.name, split, net.name, cache_dir)
  if os.path.exists(path):
    ref = load(path)
    if ref.fingerprint == net.fingerprint and len(ref.features) >= min(keep, ref.count):
      return ref
    log(f"Reference statistics {path} were computed with other weights or fewer kept features; recomputing.")
  from genjax import data
  dataset = data.load(data_cfg, split)
  log(f"Computing {net.name} reference statistics of {data_cfg.name}/{split} "
      f"({dataset.num_examples} examples) into {path} (once).")
  ref = compute(dataset.eval_batches(batch_size), net, keep)
  save(path, ref)
  return ref
