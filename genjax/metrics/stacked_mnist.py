"""Stacked-MNIST mode coverage (Metz et al., 2017; protocol of PacGAN, Lin et al., 2018).

A Stacked-MNIST image stacks three MNIST digits as its three channels, so there are 1000
modes. Each channel of a generated sample is classified by a pre-trained MNIST classifier;
the three digits name its mode (100 d0 + 10 d1 + d2). PacGAN draws 26,000 samples and reports
the number of modes with at least one sample and KL(mode histogram || uniform over 1000).
"""

from typing import Callable, Dict

import numpy as np

from genjax import errors

NUM_MODES = 1000
PACGAN_NUM_SAMPLES = 26_000


def mode_indices(digits_Nx3: np.ndarray) -> np.ndarray:
  """i64[N]: the mode of each sample from its per-channel digits (0-9)."""
  d = np.asarray(digits_Nx3, np.int64)
  if d.ndim != 2 or d.shape[1] != 3 or d.min(initial=0) < 0 or d.max(initial=0) > 9:
    raise errors.ConfigError(f"mode_indices takes digits in 0..9 of shape [N, 3], got {d.shape}.")
  return d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]


def mode_metrics(mode_counts_M: np.ndarray) -> Dict[str, float]:
  """Number of modes hit and KL(p || uniform) of the histogram `mode_counts` (i[1000])."""
  counts = np.asarray(mode_counts_M, np.float64)
  p = counts / counts.sum()
  nonzero = p > 0
  kl = float(np.sum(p[nonzero] * np.log(p[nonzero] * len(p))))
  return {"modes": int(nonzero.sum()), "kl": kl, "num_samples": int(counts.sum())}


class ModeCounter:
  """Streams batches of 3-channel samples through `classify(images f32[N,28,28,1]) -> i[N]`."""

  def __init__(self, classify: Callable[[np.ndarray], np.ndarray]):
    self.classify = classify
    self.counts = np.zeros(NUM_MODES, np.int64)

  def update(self, images_NxHxWx3: np.ndarray) -> "ModeCounter":
    x = np.asarray(images_NxHxWx3)
    if x.ndim != 4 or x.shape[-1] != 3:
      raise errors.ConfigError(f"Stacked-MNIST samples have 3 channels, got shape {x.shape}.")
    n = len(x)
    # All three channels in one classifier call: [N,H,W,3] -> [3N,H,W,1], channel-major.
    channels = np.moveaxis(x, -1, 0).reshape(3 * n, *x.shape[1:3], 1)
    digits_Nx3 = np.asarray(self.classify(channels)).reshape(3, n).T
    self.counts += np.bincount(mode_indices(digits_Nx3), minlength=NUM_MODES)
    return self

  def result(self) -> Dict[str, float]:
    return mode_metrics(self.counts)
