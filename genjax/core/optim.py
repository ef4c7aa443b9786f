"""Optimizers and schedules from the `Optim` config, all built from optax.

Muon (optim.name "muon"; Jordan et al. 2024, KellerJordan/modded-nanogpt; optax.contrib) needs
to know which parameters are matrices: a family passes `matrix_axes(path, shape)`, giving a
parameter's (reduction axes, output axes), or None for what AdamW takes instead. Shapes: a
matrix's axes other than those two are batch axes, each slice orthogonalised apart.
"""

import dataclasses
import math
from typing import Callable, Optional, Sequence, Tuple

import jax
import optax
from optax import contrib

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


# (path, shape) -> (reduction axes, output axes) of a matrix, or None
MatrixAxes = Callable[[Tuple, Tuple[int, ...]], Optional[Tuple[Sequence[int], Sequence[int]]]]


def make_optimizer(
  optim: Optim,
  total_steps: int,
  learning_rate: Optional[float] = None,
  decay_mask: Callable = default_decay_mask,
  matrix_axes: Optional[MatrixAxes] = None,
) -> optax.GradientTransformation:
  """Clipping, then Adam / AdamW (decoupled decay masked by `decay_mask`) / SGD / Muon beside
  AdamW (the family's `matrix_axes` naming Muon's matrices), with the schedule; wrapped in
  optax.MultiSteps when gradients are accumulated over several steps. `learning_rate` overrides
  optim.learning_rate (e.g. a GAN discriminator's TTUR rate)."""
  if learning_rate is not None:
    optim = optim.__class__(**{**optim.__dict__, "learning_rate": learning_rate})
  lr = schedule(optim, total_steps // optim.grad_accum_steps)
  if optim.name == "adam":
    tx = optax.adam(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps)
  elif optim.name == "adamw":
    tx = optax.adamw(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay, mask=decay_mask)
  elif optim.name == "sgd":
    tx = optax.sgd(lr, momentum=optim.b1 or None)
  elif optim.name == "muon":
    tx = muon_with_adamw(optim, total_steps // optim.grad_accum_steps, decay_mask, matrix_axes)
  else:
    raise errors.ConfigError(f"unknown optimizer {optim.name!r}")
  if optim.grad_clip_norm is not None:
    tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
  if optim.grad_accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=optim.grad_accum_steps)
  return tx


# ----------------------------------------------------------------------------------------------
# Muon for the hidden matrices, AdamW for the rest
# ----------------------------------------------------------------------------------------------


def muon_labels(params, matrix_axes: MatrixAxes):
  """The same tree as `params`: "muon" where matrix_axes names a matrix, else "adamw"."""
  label = lambda path, p: "adamw" if matrix_axes(path, p.shape) is None else "muon"
  return jax.tree_util.tree_map_with_path(label, params)


def muon_with_adamw(
  optim: Optim, total_steps: int, decay_mask: Callable, matrix_axes: Optional[MatrixAxes]
) -> optax.GradientTransformation:
  """optax.partition of Muon (the matrices `matrix_axes` names) and AdamW (everything else, with
  optim's learning rate, betas, eps and weight decay under `decay_mask`), as modded-nanogpt splits
  its parameters. Muon's chain is optax.contrib.muon's: Nesterov momentum orthogonalised by
  Newton-Schulz (optax's quintic coefficients), scaled by sqrt(max(1, fan_out / fan_in)),
  decoupled weight decay, then muon_learning_rate on optim's schedule."""
  if matrix_axes is None:
    raise errors.ConfigError(
      "config.optim.name = 'muon' needs a model that names its hidden matrices, and this family's "
      "optimizer names none (Muon is wired for the GPT: family autoregressive with a GPTConfig model). "
      "Use --config.optim.name=adamw (or adam, sgd)."
    )
  dims = lambda tree: jax.tree_util.tree_map_with_path(
    lambda path, x: contrib.MuonDimensionNumbers(*matrix_axes(path, x.shape)), tree
  )
  muon_lr = schedule(dataclasses.replace(optim, learning_rate=optim.muon_learning_rate), total_steps)
  hidden = optax.chain(
    contrib.scale_by_muon(
      ns_steps=optim.muon_ns_steps,
      beta=optim.muon_momentum,
      nesterov=optim.muon_nesterov,
      weight_dimension_numbers=dims,
    ),
    optax.stateless(lambda updates, params: _scale_by_shape(updates, matrix_axes)),
    optax.add_decayed_weights(optim.muon_weight_decay),
    optax.scale_by_learning_rate(muon_lr),
  )
  rest = optax.adamw(
    schedule(optim, total_steps),
    b1=optim.b1,
    b2=optim.b2,
    eps=optim.eps,
    weight_decay=optim.weight_decay,
    mask=decay_mask,
  )
  return optax.partition({"muon": hidden, "adamw": rest}, lambda params: muon_labels(params, matrix_axes))


def _scale_by_shape(updates, matrix_axes: MatrixAxes):
  """Each orthogonalised update times sqrt(max(1, fan_out / fan_in)): Keller Jordan's Muon and
  optax.contrib.muon's default (a layer that widens its input takes proportionally larger steps
  in spectral norm, as its gain calls for)."""

  def scale(path, u):
    reduction, output = matrix_axes(path, u.shape)
    fan_in, fan_out = math.prod(u.shape[a] for a in reduction), math.prod(u.shape[a] for a in output)
    return u * math.sqrt(max(1.0, fan_out / fan_in))

  return jax.tree_util.tree_map_with_path(scale, updates)
