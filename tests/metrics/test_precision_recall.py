"""Improved precision and recall (k-NN manifolds, k=3)."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from genjax.metrics import precision_recall as pr

CENTRES = np.eye(8)[:4] * 50.0  # four well separated modes


def mixture(rng, n, modes):
  which = rng.choice(modes, n)
  return CENTRES[which] + rng.normal(size=(n, 8))


def test_radii_match_sklearn():
  x = np.random.default_rng(0).normal(size=(200, 5))
  distances, _ = NearestNeighbors(n_neighbors=4).fit(x).kneighbors(x)  # itself + 3 neighbours
  np.testing.assert_allclose(np.sqrt(pr.knn_radii(x, k=3, block=64)), distances[:, 3], rtol=1e-6)


def test_identical_sets_have_precision_and_recall_one():
  x = mixture(np.random.default_rng(1), 500, [0, 1, 2, 3])
  assert pr.precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}


def test_dropped_modes_lower_recall_and_extra_modes_lower_precision():
  rng = np.random.default_rng(2)
  real = mixture(rng, 800, [0, 1, 2, 3])
  # k-NN balls miss part of a fresh sample of the same distribution in 8-d: compare with it.
  full = pr.precision_recall(real, mixture(rng, 800, [0, 1, 2, 3]))
  half = pr.precision_recall(real, mixture(rng, 800, [0, 1]))
  assert full["precision"] > 0.7 and full["recall"] > 0.7
  assert half["precision"] == pytest.approx(full["precision"], abs=0.06)
  assert half["recall"] == pytest.approx(full["recall"] / 2, abs=0.06)
  outside = pr.precision_recall(real[:, :4], mixture(rng, 800, [0, 1, 2, 3])[:, :4] + 25.0)
  assert outside["precision"] < 0.05
