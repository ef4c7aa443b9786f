"""The compiled experiment, built once: what every command runs.

    program = build(exp, info)          # placement, family, keys, compiled train and eval calls
    state = program.init_state()        # or program.restore(checkpoints)
    state, metrics = program.train_step(state, program.put_batch(batch), step)
    means, count = program.eval_means(state, batches)
    images = program.sampler(n, options)(state.variables(ema=True), program.keys.sample)

The loop (genjax.trainer.loop), `genjax.sample`, `genjax.evaluate`, a workdir read back
(genjax.trainer.workdir), `genjax.bench` and `genjax.profile` all take their calls from here, so
a benchmark times the very call the loop runs.

Keys: `init, train, eval, sample = split(key(train.seed), 4)`; the train call draws step s's
randomness from fold_in(train, s) inside the compiled call (genjax.core.step.keyed_steps).
"""

import dataclasses
import logging
import math
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import jax
import numpy as np

from genjax import config as config_lib
from genjax import families
from genjax.core import checkpoint as ckpt_lib
from genjax.core.placement import Placement, check_fits, place
from genjax.core.step import keyed_steps
from genjax.data.info import DataInfo

log = logging.getLogger("genjax")


@dataclasses.dataclass(frozen=True)
class Keys:
  """The run's four PRNG keys, from train.seed."""

  init: jax.Array
  train: jax.Array
  eval: jax.Array
  sample: jax.Array

  @classmethod
  def of(cls, seed: int) -> "Keys":
    return cls(*jax.random.split(jax.random.key(seed), 4))


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
  """An experiment turned into compiled calls on a placement (see the module docstring)."""

  exp: config_lib.Experiment
  info: DataInfo
  family: Any  # genjax.families.base.Family
  placement: Placement  # with the state's shardings
  keys: Keys
  abstract_state: Any  # the state's ShapeDtypeStructs, with their shardings
  train_step: Callable  # (state, batch, step: int32) -> (state, metrics); state donated
  eval_step: Callable  # (state, batch, rng) -> (means over the batch's real examples, their count)

  @property
  def stacked(self) -> bool:
    """Whether a train call takes [K, B, ...] batches of K = train.steps_per_call steps."""
    return self.exp.train.steps_per_call > 1

  def put_batch(self, host_batch, stacked: Optional[bool] = None):
    return self.placement.put_batch(host_batch, stacked=self.stacked if stacked is None else stacked)

  def init_state(self):
    """A fresh state, placed (a sharded state is created sharded)."""
    p = self.placement
    out = p.state_sharding if p.on_mesh else p.replicated
    return p.put_state(jax.jit(self.family.init, out_shardings=out)(self.keys.init))

  def restore(self, checkpoints: ckpt_lib.Checkpoints, step: Optional[int] = None):
    """(step, placed state, meta) of checkpoint `step` (default: the newest readable one), or
    None when there is none."""
    if step is None:
      found = checkpoints.restore_latest(self.abstract_state)
      if found is None:
        return None
    else:
      found = (step, *checkpoints.restore(step, self.abstract_state))
    start, state, meta = found
    return start, self.placement.put_state(state), meta

  def check_fits(self, n: int, what: str, fix: str) -> None:
    """ConfigError when n examples of the data's shape (float32: what a batch or a sample of
    them holds at the least) cannot fit in the memory of this process's first device."""
    shape = tuple(self.info.shape)
    device = self.placement.devices_here[0]
    check_fits(n, math.prod(shape) * 4, f"{what} of shape {shape} at once", fix, device)

  def eval_means(self, state, batches: Iterable[Dict[str, np.ndarray]], rng=None) -> Tuple[Dict[str, float], float]:
    """({metric: mean over every real example of `batches`}, number of real examples): each
    batch's means weighted by its real examples (a padded last batch counts for what it holds),
    summed on the host in float64. The one eval mean of the loop and of genjax.evaluate."""
    rng = self.keys.eval if rng is None else rng
    totals: Dict[str, float] = {}
    weight = 0.0
    for batch in batches:
      means, count = self.placement.host_metrics(self.eval_step(state, self.put_batch(batch, stacked=False), rng))
      count = float(count)
      for k, v in means.items():
        totals[k] = totals.get(k, 0.0) + count * float(v)
      weight += count
    return {k: v / max(weight, 1.0) for k, v in totals.items()}, weight

  def sampler(self, n: int, options=None, fix: str = "Draw fewer samples at a time.") -> Callable:
    """`fn(variables, rng) -> n samples`, compiled once per (n, options) for whoever keeps it.
    ConfigError first when n samples cannot fit in memory; `fix` says how to ask for fewer."""
    self.check_fits(n, "samples", fix)
    sample = self.family.sample
    return jax.jit(lambda variables, rng: sample(variables, rng, n, options))


def build(
  exp: config_lib.Experiment,
  info: DataInfo,
  placement: Optional[Placement] = None,
) -> Program:
  """The program of `exp` on data `info`, placed as exp.parallel asks (or on `placement`)."""
  placement = placement or place(exp.parallel)
  family = families.build(exp, info, batch_splits=placement.batch_splits)
  keys = Keys.of(exp.train.seed)
  shapes = jax.eval_shape(family.init, keys.init)  # as abstract_state_of(exp, info)
  placement = placement.for_state(shapes, family.partition_rules)
  _report_sharding(placement, shapes, family.partition_rules)
  K = exp.train.steps_per_call
  program = Program(
    exp=exp,
    info=info,
    family=family,
    placement=placement,
    keys=keys,
    abstract_state=placement.abstract(shapes),
    train_step=placement.compile(keyed_steps(family.train_step, keys.train, K), True, stacked=K > 1),
    eval_step=placement.compile(family.eval_step, False),
  )
  if family.output != "none":  # the loop draws exp.eval.num_samples in one call at each evaluation
    program.check_fits(exp.eval.num_samples, "samples", "Lower --config.eval.num_samples (drawn in one call).")
  return program


def _report_sharding(placement: Placement, shapes, rules):
  """Logs (process 0) how much of the state each device holds when it is sharded, and a warning
  when a sharded layout splits under half of it."""
  line, warnings = placement.state_report(shapes, rules)
  if jax.process_index() != 0:
    return
  if line:
    log.info(line)
  for warning in warnings:
    log.warning(warning)


def abstract_state_of(exp: config_lib.Experiment, info: DataInfo):
  """The ShapeDtypeStructs of `exp`'s train state, traced without compiling anything: what a
  checkpoint of `exp` holds."""
  return jax.eval_shape(families.build(exp, info).init, Keys.of(exp.train.seed).init)


def one_device() -> Placement:
  """This process's first device, as the read-only commands (sample, evaluate) use."""
  return place(config_lib.Parallel(mode="jit", num_devices=1), jax.local_devices()[:1])
