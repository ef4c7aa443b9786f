"""The classifier family (the feature network of domain FD and Stacked-MNIST modes)."""

import jax
import numpy as np
import pytest

from genjax import config as C
from genjax import families
from genjax.data.info import DataInfo
from genjax.families import classifier


def build(steps=30):
  exp = C.Experiment(
    family="classifier",
    model=classifier.Config(channels=(8, 16), feature_dim=32, dropout=0.0),
    optim=C.Optim(learning_rate=3e-3),
    train=C.Train(steps=steps, batch_size=32),
  )
  info = DataInfo("toy", "image", (8, 8, 1), num_classes=2)
  return families.build(exp, info), info


def toy_batch(rng, n):
  """Class 1 images are bright in the top half, class 0 in the bottom half."""
  label = rng.integers(0, 2, n).astype(np.int32)
  image = rng.uniform(-1, 0, (n, 8, 8, 1)).astype(np.float32)
  image[label == 1, :4] += 1.0
  image[label == 0, 4:] += 1.0
  return {"image": image, "label": label}


def test_learns_counts_steps_and_evaluates_exactly_with_padding():
  family, info = build()
  rng = np.random.default_rng(0)
  state = family.init(jax.random.key(0))
  step = jax.jit(family.train_step)
  for i in range(30):
    state, metrics = step(state, toy_batch(rng, 32), jax.random.key(i))
  assert int(state.step) == 30
  test = toy_batch(rng, 50)
  padded = {k: np.concatenate([v, v[:14] * 0]) for k, v in test.items()} | {
    "mask": np.r_[np.ones(50), np.zeros(14)].astype(np.float32)
  }
  padded["label"] = padded["label"].astype(np.int32)
  result = family.evaluate(state, [padded], None)
  model = classifier.make_model(classifier.Config(channels=(8, 16), feature_dim=32), info)
  logits, features = model.apply(state.variables(), test["image"], train=False)
  want = float(np.mean(np.argmax(np.asarray(logits), -1) == test["label"]))
  assert result["num_examples"] == 50 and result["accuracy"] == pytest.approx(want)
  assert result["accuracy"] > 0.9 and features.shape == (50, 32)
  metrics, count = family.eval_step(state, padded, None)
  assert float(metrics["accuracy"]) == pytest.approx(want, abs=1e-6) and float(count) == 50
  assert family.output == "none" and family.sample(state.variables(), jax.random.key(0), 4).shape == (0, 8, 8, 1)
