"""Frechet distance against an independent float64 scipy reference, and streaming statistics."""

import numpy as np
import pytest
import scipy.linalg

from genjax.metrics import frechet


def scipy_reference(mu1, s1, mu2, s2):
  """The formula of the reference FID code (Heusel et al.), through scipy's general sqrtm."""
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  covmean = covmean.real
  diff = mu1 - mu2
  return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def random_gaussian_stats(rng, d, n, scale=1.0):
  a = rng.normal(size=(d, d)) * scale
  x = rng.normal(size=(n, d)) @ a + rng.normal(size=d) * 3
  return x.mean(0), np.cov(x, rowvar=False), x


@pytest.mark.parametrize("d", [2, 16, 64])
def test_matches_scipy_reference_on_random_gaussians(d):
  rng = np.random.default_rng(d)
  mu1, s1, _ = random_gaussian_stats(rng, d, 4 * d + 50)
  mu2, s2, _ = random_gaussian_stats(rng, d, 4 * d + 50, scale=0.5)
  got = frechet.frechet_distance(mu1, s1, mu2, s2)
  want = scipy_reference(mu1, s1, mu2, s2)
  assert got == pytest.approx(want, rel=1e-7, abs=1e-8)
  assert got > 0.1


def test_closed_form_for_diagonal_covariances():
  # For diagonal covariances FD = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2 exactly.
  a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  want = 1.0 + 4.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert frechet.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-12)


def test_zero_between_a_set_and_itself_even_when_rank_deficient():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 64))  # fewer samples than dimensions: singular covariance
  mu, cov = x.mean(0), np.cov(x, rowvar=False)
  assert abs(frechet.frechet_distance(mu, cov, mu, cov)) < 1e-8 * np.trace(cov)


def test_sqrtm_psd_is_checked():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(8, 8))
  s = a @ a.T
  root = frechet.sqrtm_psd(s)
  np.testing.assert_allclose(root @ root, s, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(root, root.T, atol=1e-12)
  with pytest.raises(ValueError, match="positive semi-definite"):
    frechet.sqrtm_psd(-s)
  with pytest.raises(ValueError, match="symmetric"):
    frechet.sqrtm_psd(a)
  with pytest.raises(ValueError, match="NaN"):
    frechet.frechet_distance(np.zeros(2), np.full((2, 2), np.nan), np.zeros(2), np.eye(2))


def test_streaming_stats_equal_batch_stats_with_masks_and_offsets():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(1000, 12)).astype(np.float32) * 3 + 1e4  # a large common offset
  stats = frechet.RunningStats(12)
  start = 0
  for size in (1, 7, 300, 92, 600):
    chunk = x[start : start + size]
    mask = np.ones(len(chunk))
    padded = np.concatenate([chunk, np.full((5, 12), 123.0, np.float32)])  # padding rows
    stats.update(padded, np.concatenate([mask, np.zeros(5)]))
    start += size
  x64 = x.astype(np.float64)
  assert stats.count == 1000
  np.testing.assert_allclose(stats.mean, x64.mean(0), rtol=1e-12)
  np.testing.assert_allclose(stats.cov, np.cov(x64, rowvar=False), rtol=1e-9, atol=1e-9)


def test_streaming_stats_reject_wrong_shapes_and_too_few_examples():
  stats = frechet.RunningStats(3)
  with pytest.raises(ValueError, match=r"\[N, 3\]"):
    stats.update(np.zeros((4, 5)))
  stats.update(np.zeros((1, 3)))
  with pytest.raises(ValueError, match="at least 2"):
    _ = stats.cov
