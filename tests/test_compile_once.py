"""What the profile asks of the loop: the train step compiles once, several steps per call give
the same losses as one, and the old state's buffers are donated.

A short `loop.train` run of the MLP VAE on the embedded digits; compilations are counted from
JAX's own log (`jax_log_compiles` logs "Compiling jit(<function name>) ..." for every lowering,
i.e. for every cache miss of a jitted function).
"""

import dataclasses
import logging

import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax import families
from genjax.config import Data, Eval, Experiment, Optim, Parallel, Train
from genjax.core.placement import place
from genjax.data.info import DataInfo
from genjax.families import vae
from genjax.trainer import loop, writers


def small_experiment(steps=8, steps_per_call=1, log_every=2, eval_every=4, checkpoint_every=4, num_devices=1):
  return Experiment(
    name="compile-once",
    family="vae",
    model=vae.Config(hidden=(32,), latents=(4,), eval_samples=10, eval_chunk=10, eval_step_samples=3),
    data=Data(name="digits"),
    optim=Optim(learning_rate=3e-3, ema_decay=0.9),
    train=Train(
      steps=steps,
      batch_size=16,
      log_every=log_every,
      eval_every=eval_every,
      checkpoint_every=checkpoint_every,
      steps_per_call=steps_per_call,
      progress=False,
    ),
    parallel=Parallel(mode="jit", num_devices=num_devices),
    eval=Eval(num_batches=2, num_samples=4),
  )


class CompileLog(logging.Handler):
  """Collects the names of the functions JAX compiles (needs jax_log_compiles)."""

  def __init__(self):
    super().__init__(logging.DEBUG)
    self.names = []

  def emit(self, record):
    message = record.getMessage()
    if message.startswith("Compiling "):
      self.names.append(message.split()[1])

  def count(self, name):
    # "jit(train_step)" in current JAX, "jit_train_step" in older versions.
    return sum(n in (f"jit({name})", f"jit_{name}", f"pmap({name})", f"pmap_{name}") for n in self.names)


@pytest.fixture
def compile_log():
  handler = CompileLog()
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  previous = jax.config.jax_log_compiles
  jax.config.update("jax_log_compiles", True)
  try:
    yield handler
  finally:
    jax.config.update("jax_log_compiles", previous)
    logger.removeHandler(handler)


@pytest.mark.parametrize("steps_per_call,step_name", [(1, "train_step"), (2, "train_steps")])
def test_train_step_compiles_once_over_a_loop_run(tmp_path, compile_log, steps_per_call, step_name):
  # 8 steps, logs every 2, two evaluations (each over two eval batches, the last one padded) and
  # two checkpoints: none of it may change the step's input shapes, shardings or dtypes.
  loop.train(small_experiment(steps_per_call=steps_per_call), str(tmp_path))
  assert compile_log.count(step_name) == 1, compile_log.names
  assert compile_log.count("eval_step") == 1, compile_log.names
  # The check itself works: the log saw the step and a second, different shape compiles again.
  assert any(step_name in n for n in compile_log.names)


def test_compile_counter_sees_a_recompilation(compile_log):
  # The counter would notice a step traced anew, e.g. for a batch of another size.
  exp = small_experiment()
  info = DataInfo(name="digits", kind="image", shape=(8, 8, 1), num_classes=10)
  family = families.build(exp, info)
  par = place(exp.parallel)
  state = par.put_state(family.init(jax.random.key(0)))
  step = par.compile(family.train_step, returns_state=True)
  for batch_size in (8, 8, 16):
    batch = par.put_batch(info.example_batch(batch_size))
    state, _ = step(state, batch, jax.random.key(1))
  assert compile_log.count("train_step") == 2, compile_log.names


@pytest.mark.parametrize("num_devices", [1, 2])
def test_steps_per_call_gives_the_same_losses(tmp_path, num_devices):
  # Two devices: the scanned call's batch [K, B, ...] must be sharded along B (a jit whose batch
  # sharding was the unstacked P("data") refused the stacked batch).
  one = loop.train(small_experiment(steps=8, log_every=4, eval_every=8, checkpoint_every=8), str(tmp_path / "k1"))
  four = loop.train(
    small_experiment(steps=8, steps_per_call=4, log_every=4, eval_every=8, checkpoint_every=8, num_devices=num_devices),
    str(tmp_path / "k4"),
  )
  losses = lambda d: {r["step"]: r["loss"] for r in writers.read_metrics(str(tmp_path / d)) if "loss" in r}
  l1, l4 = losses("k1"), losses("k4")
  assert sorted(l1) == sorted(l4) == [4, 8]
  # The same batches and keys in the same order; only XLA's fusion of the scanned step differs.
  np.testing.assert_allclose([l4[s] for s in (4, 8)], [l1[s] for s in (4, 8)], rtol=1e-5)
  assert one["eval"] and sorted(one["eval"]) == sorted(four["eval"])
  for name, value in one["eval"].items():
    np.testing.assert_allclose(four["eval"][name], value, rtol=1e-5, err_msg=name)


def test_old_state_buffers_are_donated():
  exp = small_experiment()
  info = DataInfo(name="digits", kind="image", shape=(8, 8, 1), num_classes=10)
  family = families.build(exp, info)
  par = place(exp.parallel)
  state = par.put_state(family.init(jax.random.key(0)))
  step = par.compile(family.train_step, returns_state=True)
  new_state, _ = step(state, par.put_batch(info.example_batch(16)), jax.random.key(1))
  jax.block_until_ready(new_state)
  old_params = jax.tree.leaves(state.params)
  assert all(x.is_deleted() for x in old_params), "the old params were not donated to the step"
  assert not any(x.is_deleted() for x in jax.tree.leaves(new_state.params))
  # Evaluation does not consume the state it reads.
  evaluate = par.compile(family.eval_step, returns_state=False)
  batch = dict(par.put_batch(info.example_batch(16)))
  evaluate(new_state, batch, jax.random.key(2))
  assert not any(x.is_deleted() for x in jax.tree.leaves(new_state.params))


def test_steps_per_call_must_divide_the_schedule(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="steps_per_call"):
    loop.train(dataclasses.replace(small_experiment(steps_per_call=3)), str(tmp_path))
