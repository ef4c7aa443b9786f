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
import numpy as np
import optax

from genjax.families.base import Family
from genjax.train import optim as optim_lib
from genjax.train import parallel
from genjax.train.state import TrainState, apply_gradients


@dataclasses.dataclass(frozen=True)
class Config:
  channels: Tuple[int, ...] = (32, 64)   # one block of two 3x3 convolutions per entry
  feature_dim: int = 128                 # width of the penultimate (feature) layer
  dropout: float = 0.3
  label_smoothing: float = 0.0


class Classifier(nn.Module):
  """images f32[B,H,W,C] in [-1, 1] -> (logits f32[B,K], features f32[B,feature_dim])."""

  config: Config
  num_classes: int
  axis_name: str = None
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC, train: bool):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             axis_name=self.axis_name if train else None, dtype=self.dtype)
    h = x_BxHxWxC.astype(self.dtype)
    for width in self.config.channels:
      for _ in range(2):
        h = nn.Conv(width, (3, 3), use_bias=False, dtype=self.dtype)(h)
        h = nn.relu(norm()(h))
      h = nn.max_pool(h, (2, 2), strides=(2, 2))
    h = h.reshape(h.shape[0], -1)
    h = nn.Dense(self.config.feature_dim, use_bias=False, dtype=self.dtype)(h)
    features_BxF = nn.relu(norm()(h))
    h = nn.Dropout(self.config.dropout, deterministic=not train)(features_BxF)
    logits_BxK = nn.Dense(self.num_classes, dtype=self.dtype)(h)
    return logits_BxK.astype(jnp.float32), features_BxF.astype(jnp.float32)


def make_model(exp, info, axis_name=None) -> Classifier:
  """The Flax module of a classifier experiment (used by genjax.metrics.features too)."""
  if info.kind != "image" or info.num_classes is None:
    raise ValueError(f"The classifier family needs labelled images; dataset {info.name!r} is "
                     f"{info.kind} with num_classes={info.num_classes}.")
  return Classifier(exp.model, info.num_classes, axis_name=axis_name,
                    dtype=jnp.dtype(exp.train.compute_dtype))


def _masked_mean(x_B, mask_B):
  return jnp.sum(x_B * mask_B) / jnp.maximum(jnp.sum(mask_B), 1.0)


def build(exp, info) -> Family:
  axis_name = parallel.axis_name_for(exp.parallel.mode)
  model = make_model(exp, info, axis_name)
  eval_model = make_model(exp, info, None)
  tx = optim_lib.make_optimizer(exp.optim, exp.train.steps)
  config: Config = exp.model

  def init(rng, example_batch):
    variables = model.init(rng, example_batch["image"][:1], train=False)
    return TrainState.create(variables["params"], tx, ema=exp.optim.ema_decay is not None,
                             extra={"batch_stats": variables["batch_stats"]})

  def loss_fn(params, batch_stats, batch, rng):
    (logits, _), updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, batch["image"], train=True,
        rngs={"dropout": rng}, mutable=["batch_stats"])
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], info.num_classes),
                                  config.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, (updates["batch_stats"], {"loss": loss, "accuracy": accuracy})

  def train_step(state, batch, rng):
    # Dropout masks differ per device under pmap; fold the device index in.
    if axis_name is not None:
      rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(
        state.params, state.extra["batch_stats"], batch, rng)
    grads, metrics = parallel.mean_over_data((grads, metrics), axis_name)
    state = apply_gradients(state, grads, tx, exp.optim.ema_decay, step=state.step + 1,
                            extra={**state.extra, "batch_stats": batch_stats})
    return state, metrics

  def eval_step(state, batch, rng):
    del rng
    logits, _ = eval_model.apply(state.variables(), batch["image"], train=False)
    mask = batch.get("mask", jnp.ones(logits.shape[:1]))
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {"loss": _masked_mean(nll, mask), "accuracy": _masked_mean(correct, mask)}

  @jax.jit
  def _counts(variables, batch):
    logits, _ = eval_model.apply(variables, batch["image"], train=False)
    mask = batch["mask"]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return jnp.sum(mask), jnp.sum(nll * mask), jnp.sum(correct * mask)

  def evaluate(state, batches, rng):
    """Exact test accuracy and cross-entropy over every (unpadded) example of `batches`."""
    del rng
    variables = state.variables()
    total = np.zeros(3, np.float64)
    for batch in batches:
      total += np.array([float(v) for v in _counts(variables, batch)])
    n, nll, correct = total
    return {"accuracy": correct / n, "error_rate": 1.0 - correct / n, "loss": nll / n,
            "num_examples": int(n)}

  def sample(variables, rng, n):
    # Not a generative model: no samples (an empty batch keeps the loop's picture code simple).
    # `python -m genjax.evaluate --workdir DIR` reports its test accuracy instead.
    del variables, rng, n
    return jnp.zeros((0, *info.shape), jnp.float32)

  return Family(init=init, train_step=train_step, eval_step=eval_step, sample=sample,
                output="image", evaluate=evaluate,
                notes="classifier used for domain FD and Stacked-MNIST mode counts")
