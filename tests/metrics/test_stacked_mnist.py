"""Stacked-MNIST mode counting on synthetic images whose digits are known exactly."""

import numpy as np
import pytest

from genjax.metrics import stacked_mnist


def images_of(digits_Nx3):
  """Each channel is constant at digit/10, a value the stand-in classifier reads back."""
  return np.broadcast_to(digits_Nx3[:, None, None, :] / 10.0, (len(digits_Nx3), 28, 28, 3)).astype(np.float32)


def read_digit(channels_Nx28x28x1):
  return np.rint(channels_Nx28x28x1.mean(axis=(1, 2, 3)) * 10).astype(int)


def test_counter_is_exact_on_a_synthetic_histogram():
  rng = np.random.default_rng(0)
  digits = rng.integers(0, 10, size=(2600, 3))
  digits[:, 0] = np.minimum(digits[:, 0], 4)  # only modes 0xx .. 4xx: at most 500 modes
  counter = stacked_mnist.ModeCounter(read_digit)
  for start in range(0, len(digits), 700):
    counter.update(images_of(digits[start : start + 700]))
  want = np.zeros(1000, int)
  for a, b, c in digits:
    want[int(f"{a}{b}{c}")] += 1
  np.testing.assert_array_equal(counter.counts, want)
  result = counter.result()
  assert result["modes"] == np.count_nonzero(want) <= 500
  p = want[want > 0] / len(digits)
  assert result["kl"] == pytest.approx(np.sum(p * np.log(p / (1 / 1000))), rel=1e-12)


def test_kl_extremes():
  assert stacked_mnist.mode_metrics(np.ones(1000)) == {"modes": 1000, "kl": 0.0, "num_samples": 1000}
  one = np.zeros(1000)
  one[17] = 26000
  result = stacked_mnist.mode_metrics(one)
  assert result["modes"] == 1 and result["kl"] == pytest.approx(np.log(1000))


def test_rejects_single_channel_samples():
  with pytest.raises(ValueError, match="3 channels"):
    stacked_mnist.ModeCounter(read_digit).update(np.zeros((2, 28, 28, 1)))
