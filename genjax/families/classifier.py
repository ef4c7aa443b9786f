"""A small convolutional classifier for 28x28 digits and clothes (MNIST, Fashion-MNIST).

It is not a generative model: genjax trains it with the same loop as the four families so that
its penultimate features and predictions can evaluate them ("FD" in the data's own domain,
Stacked-MNIST mode counts; see genjax.metrics). Architecture: two VGG-style blocks of two 3x3
convolutions with batch norm and ReLU followed by 2x2 max pooling (32 and 64 channels), a
`feature_dim`-wide dense layer (the features), dropout, and the class logits.

The trained checkpoints are found again by dataset name (genjax.metrics.features):
`$GENJAX_HOME/classifiers/<dataset>` by default, see `experiments/classifier_mnist.py`.
"""

import dataclasses
import functools
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genjax.config import ConfigError
from genjax.core import step as step_lib
from genjax.data.info import DataInfo
from genjax.families.base import NoOptions
from genjax.nn.norm import BatchNorm, Dropout


@dataclasses.dataclass(frozen=True)
class Config:
  channels: Tuple[int, ...] = (32, 64)  # one block of two 3x3 convolutions per entry
  feature_dim: int = 128  # width of the penultimate (feature) layer
  dropout: float = 0.3
  label_smoothing: float = 0.0


class Classifier(nn.Module):
  """images f32[B,H,W,C] in [-1, 1] -> (logits f32[B,K], features f32[B,feature_dim])."""

  config: Config
  num_classes: int
  dtype: jnp.dtype = jnp.float32
  image_shape: Tuple[int, ...] = ()  # (H, W, C) of the images it classifies (what init traces)

  @nn.compact
  def __call__(self, x_BxHxWxC, train: bool):
    norm = functools.partial(BatchNorm, use_running_average=not train, momentum=0.9, dtype=self.dtype)
    h = x_BxHxWxC.astype(self.dtype)
    for width in self.config.channels:
      for _ in range(2):
        h = nn.Conv(width, (3, 3), use_bias=False, dtype=self.dtype)(h)
        h = nn.relu(norm()(h))
      h = nn.max_pool(h, (2, 2), strides=(2, 2))
    h = h.reshape(h.shape[0], -1)
    h = nn.Dense(self.config.feature_dim, use_bias=False, dtype=self.dtype)(h)
    features_BxF = nn.relu(norm()(h))
    h = Dropout(self.config.dropout, deterministic=not train)(features_BxF)
    logits_BxK = nn.Dense(self.num_classes, dtype=self.dtype)(h)
    return logits_BxK.astype(jnp.float32), features_BxF.astype(jnp.float32)


def make_model(cfg: Config, info: DataInfo, dtype=jnp.float32) -> Classifier:
  """The Flax module of a classifier experiment (used by genjax.metrics.features too)."""
  if info.kind != "image" or info.num_classes is None:
    raise ConfigError(
      f"The classifier family needs labelled images; dataset {info.name!r} is "
      f"{info.kind} with num_classes={info.num_classes}."
    )
  return Classifier(cfg, info.num_classes, dtype=jnp.dtype(dtype), image_shape=tuple(info.shape))


# ----------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------


def loss(params, batch_stats, batch, rng, model: Classifier):
  """Cross-entropy (with the config's label smoothing) of a training batch, BatchNorm on batch
  statistics and dropout from rng: (loss, ({"loss", "accuracy"}, new batch_stats))."""
  (logits, _), updates = model.apply(
    {"params": params, "batch_stats": batch_stats},
    batch["image"],
    train=True,
    rngs={"dropout": rng},
    mutable=["batch_stats"],
  )
  targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], model.num_classes), model.config.label_smoothing)
  value = optax.softmax_cross_entropy(logits, targets).mean()
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return value, ({"loss": value, "accuracy": accuracy}, updates["batch_stats"])


def eval_sums(variables, batch, rng, model: Classifier):
  """Sums over the real examples of the cross-entropy and of the correct predictions; (sums, count)."""
  del rng
  logits, _ = model.apply(variables, batch["image"], train=False)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
  return step_lib.masked_sums({"loss": nll, "accuracy": correct}, step_lib.batch_mask(batch, logits.shape[0]))


_jitted_eval_sums = jax.jit(lambda batch, v, model: eval_sums(v, batch, None, model), static_argnums=2)


def evaluate(variables, batches, rng, model: Classifier):
  """Exact test accuracy and cross-entropy over every (unpadded) example of `batches`."""
  del rng
  means, n, flops = step_lib.exact_means(_jitted_eval_sums, batches, variables, model)
  return {
    "accuracy": means["accuracy"],
    "error_rate": 1.0 - means["accuracy"],
    "loss": means["loss"],
    "num_examples": int(n),
    "flops": flops,
  }


# ----------------------------------------------------------------------------------------------
# The adapter the trainer uses
# ----------------------------------------------------------------------------------------------

CONFIGS = (Config,)
SAMPLE_OPTIONS = {"Config": NoOptions}  # draws no samples


OUTPUT = "none"
SampleOptions = NoOptions


def init(rng, model: Classifier):
  """Fresh variables: {"params": ..., "batch_stats": ...}."""
  return model.init(rng, jnp.zeros((1, *model.image_shape), jnp.float32), train=False)


def updates(model: Classifier):
  """One update: the cross-entropy, with BatchNorm's statistics as the step's new collection."""

  def train_loss(params, state, batch, rng, i):
    value, (metrics, batch_stats) = loss(params, state.extra["batch_stats"], batch, rng, model)
    return value, (metrics, {"batch_stats": batch_stats})

  return (step_lib.Update(train_loss),)


def sample(variables, rng, n: int, model: Classifier, options: SampleOptions = SampleOptions()):
  """A classifier draws no samples: an empty batch of images."""
  return jnp.zeros((0, *model.image_shape), jnp.float32)


def notes(exp, model: Classifier) -> str:
  return "classifier used for domain FD and Stacked-MNIST mode counts"
