"""Inception Score (Salimans et al., 2016): exp(E_x KL(p(y|x) || p(y))), the mean and standard
deviation over `num_splits` equal splits of the samples (10 in the paper's code).

It takes class probabilities from any classifier: the FID Inception network's 1008-way softmax
(as the original code, which used the same 2015-12-05 graph) or a domain classifier's.
"""

from typing import Dict

import numpy as np

from genjax import errors


def inception_score(probs_NxK: np.ndarray, num_splits: int = 10) -> Dict[str, float]:
  p = np.asarray(probs_NxK, np.float64)
  if p.ndim != 2 or len(p) < num_splits:
    raise errors.ConfigError(
      f"inception_score needs probabilities [N, K] with N >= num_splits={num_splits}, got {p.shape}."
    )
  if not np.allclose(p.sum(1), 1.0, atol=1e-3) or p.min() < 0:
    raise errors.ConfigError("inception_score takes probabilities (rows of a softmax), not logits.")
  scores = []
  for part in np.array_split(p, num_splits):
    marginal = part.mean(0, keepdims=True)
    # xlogy: 0 log 0 = 0 for classes a sample gives no probability.
    kl = np.sum(part * (np.log(np.where(part > 0, part, 1.0)) - np.log(np.where(marginal > 0, marginal, 1.0))), 1)
    scores.append(np.exp(kl.mean()))
  return {"is": float(np.mean(scores)), "is_std": float(np.std(scores))}
