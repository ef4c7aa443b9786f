"""experiments/ddpm_cifar10.py is the paper's setup: its model has 35.7M parameters and trains."""

import math

import jax
import jax.numpy as jnp

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


def test_one_train_step_on_a_mock_batch_traces_to_the_same_state():
  """The full model's train step, traced without compiling (compiling the 35.7M U-Net for one CPU
  step took 40 s of CI; the step's arithmetic is tested on small U-Nets in test_diffusion.py): the
  new state has the old one's structure, shapes and dtypes, the loss is a float32 scalar."""
  family = families.build(load(), CIFAR10)
  batch = {
    "image": jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32),
    "label": jax.ShapeDtypeStruct((2,), jnp.int32),
  }
  key = jax.eval_shape(lambda: jax.random.key(0))
  state = jax.eval_shape(family.init, key)
  new_state, metrics = jax.eval_shape(family.train_step, state, batch, key)
  shapes = lambda s: jax.tree.map(lambda x: (x.shape, x.dtype), s)
  assert shapes(new_state) == shapes(state)
  assert metrics["loss"].shape == () and metrics["loss"].dtype == jnp.float32
