import numpy as np
import pytest

from genjax.metrics.inception_score import inception_score


def test_confident_and_diverse_predictions_score_the_number_of_classes():
  probs = np.eye(10)[np.arange(1000) % 10]
  result = inception_score(probs, num_splits=10)
  assert result["is"] == pytest.approx(10.0, rel=1e-9)
  assert result["is_std"] == pytest.approx(0.0, abs=1e-9)


def test_identical_predictions_score_one_and_matches_kl_formula():
  rng = np.random.default_rng(0)
  assert inception_score(np.tile([[0.2, 0.8]], (50, 1)), num_splits=5)["is"] == pytest.approx(1.0)
  p = rng.dirichlet(np.ones(5) * 0.3, size=40)
  marginal = p.mean(0)
  want = np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), 1)))
  assert inception_score(p, num_splits=1)["is"] == pytest.approx(want, rel=1e-10)


def test_rejects_logits():
  with pytest.raises(ValueError, match="probabilities"):
    inception_score(np.random.default_rng(0).normal(size=(20, 3)))
