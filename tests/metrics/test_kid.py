"""KID: the unbiased MMD^2 estimator, checked against a direct double sum and for unbiasedness."""

import numpy as np
import pytest

from genjax.metrics import kid


def direct_mmd2(x, y):
  k = lambda a, b: (a @ b / len(a) + 1.0) ** 3  # noqa: E731
  n, m = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
  return xx + yy - 2 * xy


def test_matches_direct_double_sum():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(9, 4)), rng.normal(size=(7, 4)) + 0.5
  assert kid.mmd2_unbiased(x, y) == pytest.approx(direct_mmd2(x, y), rel=1e-10)


def test_unbiased_between_samples_of_one_distribution():
  rng = np.random.default_rng(1)
  values, biased = [], []
  for _ in range(400):
    x, y = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    values.append(kid.mmd2_unbiased(x, y))
    k = lambda a, b: (a @ b.T / 8 + 1) ** 3  # noqa: E731
    biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
  values = np.array(values)
  standard_error = values.std() / np.sqrt(len(values))
  assert abs(values.mean()) < 3 * standard_error
  # The V-statistic (diagonals kept) is far from 0 here, so this test tells them apart.
  assert np.mean(biased) > 10 * standard_error


def test_kernel_distance_detects_a_shift_and_uses_subsets():
  rng = np.random.default_rng(2)
  real = rng.normal(size=(300, 16))
  same = kid.kernel_distance(real, rng.normal(size=(300, 16)), num_subsets=20, subset_size=100)
  shifted = kid.kernel_distance(real, rng.normal(size=(300, 16)) + 1.0, num_subsets=20, subset_size=100)
  assert shifted["kid"] > 10 * max(abs(same["kid"]), same["kid_std"])
  assert same["kid_std"] > 0  # subsets differ
