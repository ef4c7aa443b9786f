"""experiments/ddpm_cifar10.py is the paper's setup: its model has 35.7M parameters and trains."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as C
from genjax import families
from genjax.data.info import DataInfo

CIFAR10 = DataInfo(name="cifar10", kind="image", shape=(32, 32, 3), num_classes=10)


def load():
  exp = C.load_config_file("experiments/ddpm_cifar10.py")
  return C.validate(exp)


def test_config_is_the_papers_setup():
  exp = load()
  m, o, t = exp.model, exp.optim, exp.train
  assert (t.batch_size, o.name, o.learning_rate, o.warmup_steps, o.grad_clip_norm, o.ema_decay) == (
    128,
    "adam",
    2e-4,
    5000,
    1.0,
    0.9999,
  )
  assert (m.ch, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.dropout) == (128, (1, 2, 2, 2), 2, (16,), 0.1)
  assert (m.schedule, m.timesteps, m.beta_start, m.beta_end, m.prediction, m.loss) == (
    "linear",
    1000,
    1e-4,
    0.02,
    "eps",
    "simple",
  )
  assert exp.data.flip and exp.data.name == "cifar10" and t.steps == 800_000


def test_model_has_the_papers_parameter_count():
  family = families.build(load(), CIFAR10)
  state = jax.eval_shape(family.init, jax.random.key(0))
  n = sum(math.prod(p.shape) for p in jax.tree.leaves(state.params))
  assert round(n / 1e6, 1) == 35.7, n
  assert jax.tree.structure(state.ema_params) == jax.tree.structure(state.params)


@pytest.mark.slow
def test_one_train_step_on_a_mock_batch():
  family = families.build(load(), CIFAR10)
  rng = np.random.default_rng(0)
  batch = {
    "image": jnp.asarray(rng.integers(0, 256, (2, 32, 32, 3)) / 127.5 - 1, jnp.float32),
    "label": jnp.array([1, 2], jnp.int32),
  }
  state = jax.jit(family.init)(jax.random.key(0))  # an eager init of the 35.7M U-Net runs op by op
  new_state, metrics = jax.jit(family.train_step)(state, batch, jax.random.key(1))
  assert int(new_state.step) == 1 and np.isfinite(float(metrics["loss"]))
  assert 0.5 < float(metrics["loss"]) < 2.0  # a fresh eps-predictor outputs ~0: MSE ~ E[eps^2] = 1
  # The warmup starts the learning rate at 0, so the weights stay put at step 1, but the
  # gradients reached Adam's moments (every float array of the optimizer state moved somewhere).
  moments = lambda s: [x for x in jax.tree.leaves(s.opt_state) if x.dtype == jnp.float32 and x.ndim > 0]
  assert max(float(jnp.abs(a - b).max()) for a, b in zip(moments(new_state), moments(state))) > 0
  assert jax.tree.structure(new_state.ema_params) == jax.tree.structure(state.params)
