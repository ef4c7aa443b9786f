"""The contract between a family and the shared training loop.

A family module (genjax/families/NAME.py or a folder) defines:

  Config                    a frozen dataclass of its model hyper-parameters (Experiment.model)
  build(exp, info) -> Family
                            closes the pure functions below over the experiment and the data's
                            DataInfo (image shape, number of classes, vocabulary size)

and never owns a loop, data pipeline or checkpointing: `genjax.train.loop` does all of that.
"""

import dataclasses
from typing import Any, Callable, Dict, Optional

import jax

Batch = Dict[str, Any]      # {"image": f32[B,H,W,C] in [-1, 1], "label": i32[B]} or {"tokens": i32[B,L+1]}
Metrics = Dict[str, jax.Array]  # scalar means over the batch


@dataclasses.dataclass(frozen=True)
class Family:
  """Pure functions the loop calls. Batches are the global batch under jit and each device's
  share under pmap; families average with genjax.train.parallel.mean_over_data(x, axis_name)."""

  # (rng, example_batch) -> TrainState
  init: Callable
  # (state, batch, rng) -> (state, metrics): one optimisation step, pure and jit-able
  train_step: Callable
  # (state, batch, rng) -> metrics: cheap periodic evaluation on held-out batches
  eval_step: Callable
  # (variables, rng, n) -> images f32[n,H,W,C] in [-1, 1], or tokens i32[n,L]
  sample: Callable
  output: str = "image"  # "image" or "text"
  # Optional full evaluation for `python -m genjax.evaluate`:
  # (state, batches: iterable of Batch with a "mask" key, rng) -> dict of floats
  evaluate: Optional[Callable] = None
  # Optional extra pictures for each eval: (state, batch, rng) -> {name: images f32[n,H,W,C]}
  pictures: Optional[Callable] = None
  # Optional: the parameters' FLOPs are counted by XLA; families may add notes for the bench.
  notes: str = ""


def eval_step_from_sums(sums_fn: Callable, metrics_fn: Callable, axis_name: Optional[str]) -> Callable:
  """An eval_step from `sums_fn(state, batch) -> (sum of per-example losses, number of real
  examples)`: under pmap the sums are added over devices first, so padding never biases the mean;
  `metrics_fn(mean) -> metrics`."""

  def eval_step(state, batch, rng):
    total, count = sums_fn(state, batch)
    if axis_name is not None:
      total, count = jax.lax.psum((total, count), axis_name)
    return metrics_fn(total / jax.numpy.maximum(count, 1.0))

  return eval_step


def exact_mean(jitted_sums: Callable, state, batches) -> tuple:
  """(mean loss over every real example of `batches`, count), summed on the host in float64."""
  total, count = 0.0, 0.0
  for batch in batches:
    t, c = jitted_sums(state, batch)
    total, count = total + float(t), count + float(c)
  if count == 0:
    raise ValueError("evaluate got no real examples (every batch was padding or none came).")
  return total / count, count
