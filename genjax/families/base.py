"""The contract between a family and the trainer.

A family is a module (or package) of pure functions a researcher can import and call under
their own `jax.jit`: losses `(params, batch, rng, model) -> (loss, metrics)` (a GAN has one per
network), samplers `(variables, rng, n, model, options) -> samples`, and evaluations written for
the global batch. `model` is the family's Flax module (or a small frozen dataclass of modules):
hashable, so it can be bound with functools.partial or passed as a static argument. Families
never mention devices: genjax.core.parallel makes the same functions right in every parallel mode.

Besides those functions a family module defines:

  CONFIGS                   its model config dataclasses (what `Experiment.model` may hold)
  SampleOptions             a frozen dataclass of its sampling options; None fields take the
                            experiment's defaults
  build(exp, info) -> Family
                            the thin adapter the trainer uses: the functions above bound to the
                            experiment's model, optimizer and data, and a train step made by
                            genjax.core.step from the family's losses

The trainer (genjax.trainer) owns everything else: data, sharding, checkpoints, logging,
progress bars, preemption.
"""

import dataclasses
from typing import Any, Callable, Dict, Optional

import jax

from genjax import errors

Batch = Dict[str, Any]  # {"image": f32[B,H,W,C] in [-1, 1], "label": i32[B]} or {"tokens": i32[B,L+1]}
Metrics = Dict[str, jax.Array]  # scalar means over the batch


@dataclasses.dataclass(frozen=True)
class NoOptions:
  """The sampling options of a family whose sampler takes none."""


@dataclasses.dataclass(frozen=True)
class Family:
  """What the trainer, `genjax.sample`, `genjax.evaluate` and `genjax.bench` call."""

  # (rng) -> TrainState
  init: Callable
  # (state, batch, rng) -> (state, metrics): one optimisation step (genjax.core.step.train_step)
  train_step: Callable
  # (state, batch, rng) -> metrics: means over the real examples of a held-out batch
  eval_step: Callable
  # (variables, rng, n, options=None) -> images f32[n,H,W,C] in [-1, 1], or tokens i32[n,L]
  sample: Callable
  # the family's SampleOptions class, and `resolve(options) -> options` filling in the defaults
  sample_options: type = NoOptions
  resolve_options: Callable = lambda options: options
  output: str = "image"  # "image", "text" or "none" (the classifier draws no samples)
  # Optional full evaluation for `python -m genjax.evaluate`:
  # (state, batches: iterable of Batch with a "mask" key, rng) -> dict of floats
  evaluate: Optional[Callable] = None
  # Optional extra pictures for each eval: (state, batch, rng) -> {name: images f32[n,H,W,C]}
  pictures: Optional[Callable] = None
  # text families: token ids -> text
  decode: Optional[Callable] = None
  # (regex on a parameter's path, logical axis names per dimension): which dimensions tensor
  # parallelism may split (genjax.core.sharding); families without large layers need none
  partition_rules: tuple = ()
  notes: str = ""


def check_options(family: Family, options) -> Any:
  """`options` (None: the defaults) as the family's SampleOptions, with defaults filled in."""
  if options is None:
    options = family.sample_options()
  if not isinstance(options, family.sample_options):
    raise errors.ConfigError(f"sample options must be {family.sample_options.__name__}, got {type(options).__name__}.")
  return family.resolve_options(options)
