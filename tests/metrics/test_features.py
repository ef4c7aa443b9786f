"""The feature-network registry; the trained MNIST classifier when one exists (else skipped:
train it with `python -m genjax.train --config experiments/classifier_mnist.py --workdir
$GENJAX_HOME/classifiers/mnist`, or point GENJAX_CLASSIFIER_MNIST at a trained run)."""

import numpy as np
import pytest

from genjax.metrics import features, frechet


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(features.FeatureNetError, match="inception"):
    features.get("resnet")


def test_default_networks_by_dataset():
  assert features.default_for("mnist") == features.default_for("binarized_mnist") == "classifier_mnist"
  assert features.default_for("fashion_mnist") == "classifier_fashion_mnist"
  assert features.default_for("cifar10") == features.default_for("stacked_mnist") == "inception"


def test_classifier_location_order(monkeypatch, tmp_path):
  monkeypatch.setenv("GENJAX_HOME", str(tmp_path / "home"))
  monkeypatch.delenv("GENJAX_CLASSIFIER_MNIST", raising=False)
  assert features.classifier_workdir("mnist") == str(tmp_path / "home" / "classifiers" / "mnist")
  monkeypatch.setenv("GENJAX_CLASSIFIER_MNIST", str(tmp_path / "env"))
  assert features.classifier_workdir("mnist") == str(tmp_path / "env")
  assert features.classifier_workdir("mnist", str(tmp_path / "arg")) == str(tmp_path / "arg")


def test_missing_classifier_says_how_to_train_it(monkeypatch, tmp_path):
  monkeypatch.setenv("GENJAX_HOME", str(tmp_path))
  monkeypatch.delenv("GENJAX_CLASSIFIER_FASHION_MNIST", raising=False)
  with pytest.raises(features.FeatureNetError, match="experiments/classifier_fashion_mnist.py"):
    features.get("classifier_fashion_mnist")


def test_batched_apply_pads_the_last_chunk_and_keeps_order():
  calls = []

  def fn(x):
    calls.append(x.shape)
    return x.reshape(len(x), -1) * 2, x.reshape(len(x), -1)[:, :1]

  images = (np.arange(10 * 3, dtype=np.float32) / 127.5 - 1.0).reshape(10, 3, 1, 1)  # 8-bit levels in [-1, 1]
  feats, logits = features.batched(fn, batch_size=4)(images)
  np.testing.assert_allclose(feats, images.reshape(10, 3) * 2, rtol=1e-6)
  assert logits.shape == (10, 1) and calls == [(4, 3, 1, 1)]  # one trace for all chunks


def test_samples_are_measured_as_8_bit_pictures():
  """Float samples become the 8-bit images a saved PNG would hold (round half up, clipped), as the
  reference FID pipelines read them; real 8-bit data passes through unchanged."""
  u8 = np.arange(256, dtype=np.float32)
  real = u8 / 127.5 - 1.0
  np.testing.assert_array_equal(features.quantize_uint8(real), real)
  samples = np.array([-1.3, -1.0, -0.99, 0.0, 0.001, 0.999, 1.2], np.float32)
  expected_u8 = np.array([0, 0, 1, 128, 128, 255, 255])  # floor(127.5 (x + 1) + 0.5)
  np.testing.assert_allclose(features.quantize_uint8(samples), expected_u8 / 127.5 - 1.0, atol=1e-7)


def _trained_mnist_classifier():
  try:
    return features.get("classifier_mnist")
  except features.FeatureNetError as e:
    pytest.skip(f"no trained MNIST classifier: {e}")


@pytest.mark.slow
def test_trained_mnist_classifier_features_separate_data_from_noise():
  net = _trained_mnist_classifier()
  from genjax import data
  from genjax.config import Data

  try:
    batch = next(data.load(Data(name="mnist"), "test").eval_batches(4000))
  except FileNotFoundError as e:
    pytest.skip(f"MNIST is not prepared: {e}")
  feats, logits = net.apply(batch["image"])
  assert feats.shape == (4000, net.dim) and logits.shape == (4000, 10)
  assert np.mean(np.argmax(logits, -1) == batch["label"]) > 0.985
  a, b = frechet.RunningStats(net.dim).update(feats[:2000]), frechet.RunningStats(net.dim).update(feats[2000:])
  noise = np.random.default_rng(0).uniform(-1, 1, (2000, 28, 28, 1)).astype(np.float32)
  c = frechet.RunningStats(net.dim).update(net.apply(noise)[0])
  assert frechet.frechet_distance_from_stats(a, b) * 20 < frechet.frechet_distance_from_stats(a, c)
