"""experiments/dit_imagenet256.py is the DiT paper's setup: its models have the reference code's
parameter counts on SD latents, and the first training steps run (latents, learned variances,
respaced sampling) with tiny overrides and a tiny autoencoder."""

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as C
from genjax import errors, families
from genjax.data.info import DataInfo
from genjax.families import diffusion
from genjax.families.diffusion import SampleOptions, backbones
from tests.families.autoencoders import save_tiny_autoencoder

pytest.importorskip("safetensors", reason="autoencoder weights are .safetensors files (requirements.txt)")
LATENTS = DataInfo(name="imagenet_latents", kind="image", shape=(32, 32, 4), num_classes=1000)
# facebookresearch/DiT models.py, DiT_models[name](input_size=32, num_classes=1000, learn_sigma=True),
# trainable parameters (the frozen pos_embed aside), counted in PyTorch by
# experiments/reference/torch_dit.py (tests/nn/test_dit.py repeats them against the live reference)
REFERENCE = {
  "S2": 32_865_056,
  "B2": 130_315_808,
  "L2": 457_840_672,
  "XL2": 674_834_720,
  "XL4": 675_000_704,
  "XL8": 675_664_640,
  "S8": 33_142_016,
}


CONFIG = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "experiments", "dit_imagenet256.py"
)


def load(arg=None):
  return C.validate(C.load_config_file(CONFIG + (f":{arg}" if arg else "")))


def test_config_is_the_papers_setup():
  exp = load()
  m, o, t = exp.model, exp.optim, exp.train
  assert (m.backbone, m.hidden_size, m.depth, m.num_heads, m.patch_size, m.mlp_ratio) == ("dit", 1152, 28, 16, 2, 4.0)
  assert (m.latent_scale, m.variance, m.prediction, m.schedule, m.timesteps, m.beta_start, m.beta_end) == (
    0.18215,
    "learned_range",
    "eps",
    "linear",
    1000,
    1e-4,
    0.02,
  )
  assert (m.label_dropout, m.guidance_scale, m.sampler, m.sample_steps, m.clip_denoised) == (
    0.1,
    1.5,
    "ddpm",
    250,
    False,
  )
  assert (o.name, o.learning_rate, o.weight_decay, o.ema_decay, o.ema_warmup, o.grad_clip_norm) == (
    "adamw",
    1e-4,
    0.0,
    0.9999,
    False,
    None,
  )
  assert (t.batch_size, t.steps, exp.data.image_size, exp.data.flip) == (256, 7_000_000, 256, True)


@pytest.mark.parametrize("arg", list(REFERENCE))
def test_models_have_the_reference_parameter_counts(arg):
  cfg = load(arg).model
  net = backbones.make(cfg, LATENTS, num_classes=1000)
  x, t, y = jnp.zeros((1, 32, 32, 4)), jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32)
  shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), x, t, y))
  assert sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"])) == REFERENCE[arg]


def test_first_training_steps_with_tiny_overrides(tmp_path):
  """A tiny DiT on the latents of a tiny autoencoder (32x32 RGB -> 4x4x4): two steps of the
  hybrid loss move the weights and keep the autoencoder, 3 respaced DDPM steps sample images."""
  save_tiny_autoencoder(tmp_path, channels=3, block_out_channels=(32, 32, 32, 32))
  exp = load()
  tiny = dict(hidden_size=32, depth=2, num_heads=4, sample_steps=3, autoencoder=str(tmp_path))
  exp = dataclasses.replace(exp, model=dataclasses.replace(exp.model, **tiny))
  info = DataInfo(name="imagenet", kind="image", shape=(32, 32, 3), num_classes=1000)
  family = families.build(exp, info)
  assert diffusion.make_model(exp.model, info).image_shape == (4, 4, 4)
  state = jax.jit(family.init)(jax.random.key(0))
  rng = np.random.default_rng(0)
  step = jax.jit(family.train_step)
  new = state
  for i in range(2):
    batch = {
      "image": jnp.asarray(rng.uniform(-1, 1, (4, 32, 32, 3)), jnp.float32),
      "label": jnp.asarray(rng.integers(0, 1000, 4), jnp.int32),
    }
    new, metrics = step(new, batch, jax.random.key(i))
  assert int(new.step) == 2 and np.isfinite(float(metrics["loss"])) and float(metrics["vb"]) > 0
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new.params, state.params))
  assert max(moved) > 0
  x = family.sample(new.variables(), jax.random.key(1), 2, SampleOptions(label=207))
  assert x.shape == (2, 32, 32, 3) and bool(jnp.all(jnp.isfinite(x)))


def test_without_the_sd_weights_the_run_stops_with_one_paragraph(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # the config's default folder, sd-vae-ft-ema, is not here
  info = DataInfo(name="imagenet", kind="image", shape=(256, 256, 3), num_classes=1000)
  with pytest.raises(errors.MissingError, match="sd-vae-ft-ema' does not exist"):
    diffusion.make_model(load().model, info)
