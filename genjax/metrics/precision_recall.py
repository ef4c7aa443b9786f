"""Improved precision and recall (Kynkaanniemi et al., 2019), k-nearest-neighbour manifolds.

Each set's manifold is the union of balls around its feature vectors, the radius of each ball
being the distance to its k-th nearest neighbour in the same set (k=3 in the paper).
Precision: the fraction of generated samples inside the real manifold (quality).
Recall: the fraction of real samples inside the generated manifold (coverage).
Distances are computed in blocks, so memory is O(block * N), not O(N^2).
"""

from typing import Dict

import numpy as np

from genjax import errors


def _squared_distances(a_NxD: np.ndarray, b_MxD: np.ndarray) -> np.ndarray:
  a, b = a_NxD.astype(np.float64), b_MxD.astype(np.float64)
  d = (a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None, :]
  return np.maximum(d, 0.0)


def knn_radii(features_NxD: np.ndarray, k: int = 3, block: int = 1024) -> np.ndarray:
  """f64[N]: squared distance of each vector to its k-th nearest neighbour (itself excluded)."""
  x = np.asarray(features_NxD)
  if len(x) <= k:
    raise errors.ConfigError(f"k-NN radii with k={k} need more than {k} vectors, got {len(x)}.")
  radii = np.empty(len(x))
  for start in range(0, len(x), block):
    d = _squared_distances(x[start : start + block], x)
    # Index k of the sorted row: position 0 is the vector itself at distance 0.
    radii[start : start + block] = np.partition(d, k, axis=1)[:, k]
  return radii


def fraction_inside(manifold_NxD: np.ndarray, radii_N: np.ndarray, queries_MxD: np.ndarray, block: int = 1024) -> float:
  """The fraction of `queries` within distance sqrt(radii[i]) of some manifold vector i."""
  q = np.asarray(queries_MxD)
  inside = np.zeros(len(q), bool)
  for start in range(0, len(q), block):
    d = _squared_distances(q[start : start + block], np.asarray(manifold_NxD))
    inside[start : start + block] = (d <= radii_N[None, :]).any(1)
  return float(inside.mean())


def precision_recall(real_NxD: np.ndarray, fake_MxD: np.ndarray, k: int = 3) -> Dict[str, float]:
  real, fake = np.asarray(real_NxD), np.asarray(fake_MxD)
  if real.shape[1] != fake.shape[1]:
    raise errors.ConfigError(f"Feature dimensions differ: {real.shape} vs {fake.shape}.")
  precision = fraction_inside(real, knn_radii(real, k), fake)
  recall = fraction_inside(fake, knn_radii(fake, k), real)
  return {"precision": precision, "recall": recall}
