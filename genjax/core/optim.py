"""Optimizers and schedules from the `Optim` config, all built from optax."""

from typing import Callable, Optional

import jax
import optax

from genjax import errors
from genjax.config import Optim


def schedule(optim: Optim, total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the optimizer's update count."""
  lr = optim.learning_rate
  if optim.schedule == "constant":
    if optim.warmup_steps:
      return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, optim.warmup_steps), optax.constant_schedule(lr)], [optim.warmup_steps]
      )
    return optax.constant_schedule(lr)
  if optim.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
      init_value=0.0 if optim.warmup_steps else lr,
      peak_value=lr,
      warmup_steps=optim.warmup_steps,
      decay_steps=optim.decay_steps or total_steps,
      end_value=lr * optim.end_lr_ratio,
    )
  if optim.schedule == "piecewise":
    return optax.piecewise_constant_schedule(lr, dict(zip(optim.boundaries, optim.scales)))
  raise errors.ConfigError(f"unknown schedule {optim.schedule!r}")


def default_decay_mask(params):
  """Decay matrices and convolution kernels; never biases, norm scales or 1-D parameters."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(
  optim: Optim, total_steps: int, learning_rate: Optional[float] = None, decay_mask: Callable = default_decay_mask
) -> optax.GradientTransformation:
  """Clipping, then Adam / AdamW (decoupled decay masked by `decay_mask`) / SGD, with the
  schedule; wrapped in optax.MultiSteps when gradients are accumulated over several steps.
  `learning_rate` overrides optim.learning_rate (e.g. a GAN discriminator's TTUR rate)."""
  if learning_rate is not None:
    optim = optim.__class__(**{**optim.__dict__, "learning_rate": learning_rate})
  lr = schedule(optim, total_steps // optim.grad_accum_steps)
  if optim.name == "adam":
    tx = optax.adam(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps)
  elif optim.name == "adamw":
    tx = optax.adamw(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay, mask=decay_mask)
  elif optim.name == "sgd":
    tx = optax.sgd(lr, momentum=optim.b1 or None)
  else:
    raise errors.ConfigError(f"unknown optimizer {optim.name!r}")
  if optim.grad_clip_norm is not None:
    tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
  if optim.grad_accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=optim.grad_accum_steps)
  return tx
