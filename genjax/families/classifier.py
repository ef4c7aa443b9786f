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
from genjax.core.optim import make_optimizer
from genjax.core.state import TrainState, ema_of
from genjax.data.info import DataInfo
from genjax.families.base import Family, NoOptions
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
  return Classifier(cfg, info.num_classes, dtype=jnp.dtype(dtype))


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


def evaluate(variables, batches, model: Classifier):
  """Exact test accuracy and cross-entropy over every (unpadded) example of `batches`."""
  jitted = jax.jit(lambda batch, v: eval_sums(v, batch, None, model))
  means, n = step_lib.exact_means(jitted, batches, variables)
  return {
    "accuracy": means["accuracy"],
    "error_rate": 1.0 - means["accuracy"],
    "loss": means["loss"],
    "num_examples": int(n),
  }


# ----------------------------------------------------------------------------------------------
# The adapter the trainer uses
# ----------------------------------------------------------------------------------------------

CONFIGS = (Config,)
SAMPLE_OPTIONS = {"Config": NoOptions}  # draws no samples


def build(exp, info, batch_splits: int = 1) -> Family:
  """The classifier's functions bound to `exp`; it draws no samples (output "none")."""
  model = make_model(exp.model, info, exp.train.compute_dtype)
  tx = make_optimizer(exp.optim, exp.train.steps)

  def init(rng):
    variables = model.init(rng, jnp.zeros((1, *info.shape), jnp.float32), train=False)
    return TrainState.create(
      variables["params"], tx, ema=exp.optim.ema_decay is not None, extra={"batch_stats": variables["batch_stats"]}
    )

  def train_loss(params, state, batch, rng, i):
    value, (metrics, batch_stats) = loss(params, state.extra["batch_stats"], batch, rng, model)
    return value, (metrics, {"batch_stats": batch_stats})

  return Family(
    init=init,
    train_step=functools.partial(
      step_lib.train_step, updates=(step_lib.Update(train_loss),), optimizers={None: tx}, ema=ema_of(exp.optim)
    ),
    eval_step=step_lib.eval_step_from_sums(lambda state, batch, rng: eval_sums(state.variables(), batch, rng, model)),
    sample=lambda variables, rng, n, options=None: jnp.zeros((0, *info.shape), jnp.float32),
    output="none",
    evaluate=lambda state, batches, rng: evaluate(state.variables(), batches, model),
    notes="classifier used for domain FD and Stacked-MNIST mode counts",
  )
