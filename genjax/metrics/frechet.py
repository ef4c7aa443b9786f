"""Frechet distance between Gaussians fitted to features (FID, and "FD" in other feature spaces).

    FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))       (Heusel et al., 2017)

Statistics are accumulated as running float64 sums (`RunningStats`), so 50k feature vectors
never sit in memory at once and the result does not depend on how the data were batched.

The trace of the matrix square root is computed without a non-symmetric `sqrtm`: with
R = S1^(1/2) (symmetric, from an eigen-decomposition), S1 S2 = R (R S2 R) R^-1 is similar to
the symmetric positive semi-definite R S2 R, so tr((S1 S2)^(1/2)) = sum(sqrt(eig(R S2 R))).
Everything stays real (no complex round-off to discard), and the square root R is checked
(R R = S1) before it is used.
"""

import dataclasses
from typing import Optional

import numpy as np

from genjax import errors


@dataclasses.dataclass
class RunningStats:
  """Streaming mean and covariance of D-dimensional features in float64.

  stats = RunningStats(dim); stats.update(features_NxD) per batch; stats.mean, stats.cov.
  `update` takes an optional mask f32[N] (0 for padding rows of a last evaluation batch).
  Sums are of features shifted by the first batch's mean, which keeps the covariance accurate
  when features have a large common offset (sum of outer products minus n mu mu^T cancels).
  """

  dim: int
  count: int = 0
  shift: Optional[np.ndarray] = None  # f64[D]
  sum: Optional[np.ndarray] = None  # f64[D]: sum of (x - shift)
  sum_outer: Optional[np.ndarray] = None  # f64[D,D]: sum of (x - shift)(x - shift)^T

  def update(self, features_NxD, mask_N=None) -> "RunningStats":
    x = np.asarray(features_NxD, np.float64)
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise errors.ConfigError(f"RunningStats({self.dim}) got features of shape {x.shape}; expected [N, {self.dim}].")
    if mask_N is not None:
      x = x[np.asarray(mask_N) > 0]
    if not len(x):
      return self
    if self.shift is None:
      self.shift = x.mean(0)
      self.sum = np.zeros(self.dim)
      self.sum_outer = np.zeros((self.dim, self.dim))
    x = x - self.shift
    self.count += len(x)
    self.sum += x.sum(0)
    self.sum_outer += x.T @ x
    return self

  @property
  def mean(self) -> np.ndarray:
    self._check(1)
    return self.shift + self.sum / self.count

  @property
  def cov(self) -> np.ndarray:
    """The unbiased (ddof=1) covariance, as numpy.cov and the reference FID code compute it."""
    self._check(2)
    centered_mean = self.sum / self.count
    return (self.sum_outer - self.count * np.outer(centered_mean, centered_mean)) / (self.count - 1)

  def _check(self, needed: int):
    if self.count < needed:
      raise errors.ConfigError(f"RunningStats has {self.count} examples; at least {needed} are needed.")


def sqrtm_psd(matrix: np.ndarray, check_rtol: float = 1e-6) -> np.ndarray:
  """The symmetric square root of a symmetric positive semi-definite matrix (eigh route).

  Eigenvalues that round-off made slightly negative are clipped to 0. Raises when the matrix
  is not symmetric or the root fails the check root @ root == matrix (relative Frobenius
  error above `check_rtol`), e.g. for NaNs or a matrix that is not PSD at all.
  """
  m = np.asarray(matrix, np.float64)
  scale = max(np.abs(m).max(), np.finfo(np.float64).tiny)
  if not np.allclose(m, m.T, rtol=0, atol=1e-8 * scale):
    raise errors.ConfigError("sqrtm_psd needs a symmetric matrix (a covariance).")
  eigenvalues, eigenvectors = np.linalg.eigh((m + m.T) / 2)
  if eigenvalues.min(initial=0.0) < -1e-6 * max(eigenvalues.max(initial=0.0), 1.0):
    raise errors.ConfigError(f"Matrix is not positive semi-definite (eigenvalue {eigenvalues.min():.3g}).")
  root = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T
  error = np.linalg.norm(root @ root - m) / max(np.linalg.norm(m), np.finfo(np.float64).tiny)
  if not error <= check_rtol:
    raise errors.NumericalError(f"Matrix square root check failed: |R R - S| / |S| = {error:.3g} > {check_rtol:g}.")
  return root


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """tr((sigma1 sigma2)^(1/2)) for covariances, through the symmetric R sigma2 R, R = sigma1^(1/2)."""
  root1 = sqrtm_psd(sigma1)
  inner = root1 @ np.asarray(sigma2, np.float64) @ root1
  eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2)
  return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """The Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

  mu: f[D]; sigma: f[D,D]. Computed in float64; >= 0 up to round-off (clipped at 0).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise errors.ConfigError(
      f"Shapes do not match: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}."
    )
  if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
    raise errors.ConfigError("Feature statistics contain NaN or inf: the features (or the samples) are not finite.")
  diff = mu1 - mu2
  value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
  return float(max(value, 0.0))


def frechet_distance_from_stats(a: RunningStats, b: RunningStats) -> float:
  return frechet_distance(a.mean, a.cov, b.mean, b.cov)
