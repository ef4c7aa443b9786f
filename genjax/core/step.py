"""The step builder: families supply losses, the toolkit makes the train and eval steps.

A family describes one train step as a sequence of `Update`s (most families: one; a GAN: the
critic updates, then the generator updates). `train_step` runs them in order and owns, for every
one of them, what every family needs done the same way:

  value_and_grad of the update's loss with respect to its network's parameters,
  the mean of gradients and metrics over devices (genjax.core.parallel; nothing under jit),
  the optimizer update (clipping, accumulation and the schedule live in the optax chain, see
  genjax.core.optim), the EMA of the parameters where the state keeps one (with its warm-up,
  genjax.core.state.EMA; once per optimizer update under gradient accumulation,
  state.ema_decay_after) and of the same network's collections (its BatchNorm statistics),
  the new values of the network's other variable collections (BatchNorm statistics, ...).

An update's loss is `loss(params, state, batch, rng, i) -> (loss, (metrics, collections))`:
`params` are the parameters it trains, `state` the whole TrainState before the update (for the
other networks and the collections), `i` the repetition (0 .. repeat - 1), `metrics` a dict of
scalars averaged over repetitions, `collections` the new values of the trained network's
non-parameter collections ({} when it has none).

Evaluation: `eval_step_from_sums` turns `sums(state, batch, rng) -> (sums, count)` (sums over the
real examples of the batch, padding masked out) into the means over the global batch and their count.
"""

import dataclasses
from typing import Callable, Dict, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import errors
from genjax.core import flops, parallel
from genjax.core.state import EMA, TrainState, apply_gradients, ema_decay_after, ema_update, overlay, update_ema


@dataclasses.dataclass(frozen=True)
class Update:
  """One optimizer update of one network (`key` in state.params, or all of them when None)."""

  loss: Callable
  key: Optional[str] = None
  repeat: int = 1
  finish: Optional[Callable] = None  # metrics derived after the mean over devices (e.g. bits from nats)


def merge_collections(extra: dict, key: Optional[str], collections: Mapping) -> dict:
  """state.extra with the collections of network `key` (or the whole state, key None) replaced."""
  extra = dict(extra)
  for name, value in collections.items():
    extra[name] = value if key is None else {**extra.get(name, {}), key: value}
  return extra


def collections_of(state: TrainState, key: Optional[str]) -> dict:
  """The non-parameter collections of network `key` (all of them when key is None)."""
  if key is None:
    return dict(state.extra)
  return {name: coll[key] for name, coll in state.extra.items() if key in coll}


def keeps_ema(state: TrainState, key: Optional[str]) -> bool:
  """Whether network `key` (all of them when None) has an EMA in `state`."""
  return state.ema_params is not None and (key is None or key in state.ema_params)


def apply_update(
  state: TrainState, batch, rng, update: Update, i: int, tx: optax.GradientTransformation, ema: Optional[EMA]
):
  """One update: gradients, the mean over devices, the optimizer, the EMA (of the parameters
  and of the network's collections), the collections."""
  params = state.params if update.key is None else state.params[update.key]
  grads, (metrics, collections) = jax.grad(update.loss, has_aux=True)(params, state, batch, rng, i)
  grads, metrics = parallel.mean_over_devices((grads, metrics))
  if update.finish is not None:
    metrics = update.finish(metrics)
  with jax.named_scope("optimizer"):  # the name genjax.profile sorts this phase by
    calls = state.step * update.repeat + i  # the network's optimizer calls so far
    state = apply_gradients(
      state, grads, tx, params_key=update.key, extra=merge_collections(state.extra, update.key, collections)
    )
    if ema is not None and keeps_ema(state, update.key):
      decay = ema_decay_after(ema, state.opt_state if update.key is None else state.opt_state[update.key], calls)
      state = update_ema(state, decay, update.key)
      if collections and state.ema_extra is not None:
        new = merge_collections({}, update.key, collections)
        ema_extra = ema_update(_subtree(state.ema_extra, new), new, decay)
        state = state.replace(ema_extra=overlay(state.ema_extra, ema_extra))
  return state, metrics


def _subtree(tree, like):
  """The part of `tree` at the paths of `like` (None where tree has none)."""
  if isinstance(like, dict):
    return {k: _subtree(tree.get(k) if isinstance(tree, dict) else None, v) for k, v in like.items()}
  return tree


def train_step(
  state: TrainState,
  batch,
  rng,
  *,
  updates: Sequence[Update],
  optimizers: Mapping[Optional[str], optax.GradientTransformation],
  ema: Optional[EMA] = None,
  prepare: Optional[Callable] = None,
):
  """One train step: every update in order (each `repeat` times); returns (state, metrics) with
  each update's metrics averaged over its repetitions. `prepare(batch, rng) -> batch` adds what
  every update of the step shares (drawn once: e.g. a GAN's per-example keys). Bind the keyword
  arguments with functools.partial and jit the result."""
  if prepare is not None:
    batch = prepare(batch, rng)
  metrics: Dict[str, jax.Array] = {}
  for update in updates:
    for i in range(update.repeat):
      state, metrics_i = apply_update(state, batch, rng, update, i, optimizers[update.key], ema)
      if update.repeat == 1:
        metrics = {**metrics, **metrics_i}
      else:
        metrics = {**metrics, **{k: metrics.get(k, 0.0) + v / update.repeat for k, v in metrics_i.items()}}
  return state.replace(step=state.step + 1), metrics


def masked_sums(values: Mapping[str, jax.Array], mask_B: jax.Array):
  """({name: sum of values_B over the real examples}, number of real examples)."""
  return {k: jnp.sum(v * mask_B) for k, v in values.items()}, jnp.sum(mask_B)


def batch_mask(batch, size: int) -> jax.Array:
  """The batch's "mask" (1 real, 0 padding), or all ones for a training batch."""
  return batch.get("mask", jnp.ones((size,), jnp.float32))


def means_from_sums(sums, count, finish: Optional[Callable] = None):
  """(metrics, count): means over the real examples of the global batch from this device's sums,
  `finish(means) -> metrics` (linear in the means, so batches average by their counts), and the
  global batch's number of real examples."""
  sums, count = parallel.sum_over_devices((sums, count))
  means = {k: v / jnp.maximum(count, 1.0) for k, v in sums.items()}
  return (finish(means) if finish else means), count


def eval_step_from_sums(sums_fn: Callable, finish: Optional[Callable] = None) -> Callable:
  """eval_step(state, batch, rng) -> (metrics, count), from `sums_fn(state, batch, rng) -> (sums,
  count)`: a batch's means and how many real examples they are over, which is what the means of
  several batches are weighted by (genjax.trainer.program.Program.eval_means)."""

  def eval_step(state, batch, rng):
    sums, count = sums_fn(state, batch, rng)
    return means_from_sums(sums, count, finish)

  return eval_step


def exact_means(jitted_sums: Callable, batches, *args) -> tuple:
  """({name: mean over every real example of `batches`}, count, FLOPs of all the calls), summed
  on the host in float64; `jitted_sums(batch, *args) -> (sums, count)`, a call without loops."""
  totals: Dict[str, float] = {}
  count = 0.0
  total_flops, per_shape = 0.0, {}
  for batch in batches:
    shapes = tuple((k, np.shape(v)) for k, v in sorted(batch.items()))
    if shapes not in per_shape:
      per_shape[shapes] = flops.of_call(jitted_sums, batch, *args)
    total_flops += per_shape[shapes]
    sums, n = jax.device_get(jitted_sums(batch, *args))
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + float(v)
    count += float(n)
  if count == 0:
    raise errors.ConfigError("evaluate got no real examples (every batch was padding or none came).")
  return {k: v / count for k, v in totals.items()}, count, total_flops


# ----------------------------------------------------------------------------------------------
# Several steps per call, keys derived inside the compiled step
# ----------------------------------------------------------------------------------------------


def scan_steps(train_step):
  """Several train steps in one compiled call (score_sde's trick against Python overhead):
  batches carry a leading axis of K steps, rngs are the K steps' keys."""

  def many(state, batches, rngs):
    def body(carry, xs):
      return train_step(carry, *xs)

    return jax.lax.scan(body, state, (batches, rngs))

  return many


def keyed_steps(train_step, train_rng, steps_per_call: int):
  """`fn(state, batch, step)`: `steps_per_call` train steps from global step `step`, step s drawing
  its randomness from fold_in(train_rng, s). The key is derived inside the compiled call, so the
  loop dispatches one computation per call and passes the step as a host integer."""
  family_step = train_step

  def train_step(state, batch, step):  # the name JAX's compile log shows
    return family_step(state, batch, jax.random.fold_in(train_rng, step))

  if steps_per_call == 1:
    return train_step
  many = scan_steps(family_step)

  def train_steps(state, batches, step):
    rngs = jax.vmap(lambda i: jax.random.fold_in(train_rng, i))(step + jnp.arange(steps_per_call))
    return many(state, batches, rngs)

  return train_steps
