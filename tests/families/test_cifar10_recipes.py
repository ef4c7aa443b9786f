"""experiments/edm_cifar10.py and experiments/flow_cifar10.py: EDM's Table 7 setups and the
flow-matching code's CIFAR-10 recipe, networks of the reference codes' parameter counts, and the
first training steps with tiny overrides (augmentation on)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as C
from genjax import families
from genjax.data.info import DataInfo

CIFAR10 = DataInfo(name="cifar10", kind="image", shape=(32, 32, 3), num_classes=10)

# EDM's own SongUNet (NVlabs/edm training/networks.py) built as its train.py builds it for CIFAR-10
# (augment_dim 9), counted in PyTorch by experiments/reference/torch_edm_song_unet.py (its
# counts.json; tests/nn/test_song_unet.py repeats them against the live reference).
EDM_PARAMS = {"ddpmpp": 55_733_891, "ncsnpp": 56_397_827, "ddpmpp_cond": 55_735_299, "ncsnpp_cond": 56_400_643}
# facebookresearch/flow_matching's examples/image UNetModel(**MODEL_CONFIGS["cifar10"]) counted in
# PyTorch (the command is in tests/nn/test_adm_unet.py).
FLOW_MATCHING_PARAMS = 55_676_419


def load(spec):
  return C.validate(C.load_config_file(spec))


def param_count(exp, info=CIFAR10):
  family = families.build(exp, info)
  state = jax.eval_shape(family.init, jax.random.key(0))
  return sum(math.prod(p.shape) for p in jax.tree.leaves(state.params))


def test_edm_configs_are_table_7():
  for variant in EDM_PARAMS:
    exp = load(f"experiments/edm_cifar10.py:{variant}")
    m, o, t = exp.model, exp.optim, exp.train
    assert m.backbone == variant.split("_")[0] and m.class_conditional == variant.endswith("_cond")
    assert (m.ch, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.dropout, m.augment_p) == (
      128,
      (2, 2, 2),
      4,
      (16,),
      0.13,
      0.12,
    )
    assert (m.formulation, m.preconditioning, m.p_mean, m.p_std, m.sigma_data) == ("edm", "edm", -1.2, 1.2, 0.5)
    assert (m.sampler, m.sample_steps, m.sigma_min, m.sigma_max, m.rho) == ("heun", 18, 0.002, 80.0, 7.0)
    # batch 512, lr 1e-3 ramped over 10 Mimg, 200 Mimg, EMA half-life 0.5 Mimg
    assert (t.batch_size, o.name, o.learning_rate, o.grad_clip_norm) == (512, "adam", 1e-3, None)
    assert abs(o.warmup_steps * 512 - 10e6) < 512 and abs(t.steps * 512 - 200e6) < 512
    assert o.ema_decay ** (500_000 / 512) == pytest.approx(0.5)


@pytest.mark.parametrize("variant", list(EDM_PARAMS))
def test_edm_networks_have_the_reference_parameter_counts(variant):
  assert param_count(load(f"experiments/edm_cifar10.py:{variant}")) == EDM_PARAMS[variant]


def test_flow_config_is_the_flow_matching_recipe():
  exp = load("experiments/flow_cifar10.py")
  m, o, t = exp.model, exp.optim, exp.train
  assert (m.backbone, m.ch, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.dropout) == (
    "adm",
    128,
    (2, 2, 2),
    4,
    (16,),
    0.3,
  )
  assert (m.num_heads, m.num_head_channels, m.resblock_updown, m.conv_resample) == (1, None, False, False)
  assert (m.formulation, m.flow_sigma_min, m.flow_time_scale, m.class_conditional) == ("flow", 0.0, 1.0, False)
  # the "skewed" times t = 1 / (1 + sigma), ln sigma ~ N(-1.2, 1.2^2), are logit-normal (1.2, 1.2)
  assert (m.flow_time_sampling, m.flow_logit_mean, m.flow_logit_std) == ("logit_normal", 1.2, 1.2)
  assert (m.sampler, m.sample_steps, m.flow_time_grid) == ("heun", 50, "edm")
  assert (o.name, o.learning_rate, o.b1, o.b2, o.weight_decay, o.ema_decay, o.grad_clip_norm) == (
    "adamw",
    1e-4,
    0.9,
    0.95,
    0.01,
    0.9999,
    None,
  )
  assert (t.batch_size, t.steps, exp.data.flip) == (512, 97 * 1800, True)
  assert param_count(exp, DataInfo(name="cifar10", kind="image", shape=(32, 32, 3), num_classes=None)) == (
    FLOW_MATCHING_PARAMS
  )


def test_skewed_times_are_the_logit_normal_of_the_config():
  """flow_matching's skewed_timestep_sample: t = 1 / (1 + exp(-1.2 + 1.2 n)); genjax's logit-normal
  with mean 1.2, std 1.2 draws sigmoid(1.2 + 1.2 n): the same law (n and -n are alike)."""
  from genjax.families.diffusion import flow

  cfg = load("experiments/flow_cifar10.py").model.flow()
  t = np.asarray(jax.vmap(lambda k: flow.training_time(k, cfg))(jax.random.split(jax.random.key(0), 20_000)))
  n = np.random.default_rng(0).standard_normal(200_000)
  reference = 1 / (1 + np.exp(-1.2 + 1.2 * n))
  for q in (0.1, 0.25, 0.5, 0.75, 0.9):
    assert np.quantile(t, q) == pytest.approx(np.quantile(reference, q), abs=0.01)


def test_edm_time_grid_is_the_flow_matching_codes():
  """edm_time_discretization.get_time_discretization(nfes=5), computed by hand from its formula."""
  from genjax.families.diffusion import flow

  sigma = (80 ** (1 / 7) + np.arange(5) / 4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
  expected = 1 - np.concatenate([sigma / (1 + sigma), [0.0]])
  np.testing.assert_allclose(flow.edm_time_grid(5), expected, rtol=1e-12)
  assert flow.edm_time_grid(5)[0] == pytest.approx(1 / 81) and flow.edm_time_grid(5)[-1] == 1.0


def tiny(exp, **model):
  """The experiment with its network cut to test size (the fields the tests override)."""
  small = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), **model)
  return dataclasses.replace(exp, model=dataclasses.replace(exp.model, **small))


def batch(n=4, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": jnp.asarray(rng.uniform(-1, 1, (n, 16, 16, 3)), jnp.float32),
    "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32),
  }


SMALL = DataInfo(name="cifar10", kind="image", shape=(16, 16, 3), num_classes=10)


@pytest.mark.parametrize("spec", ["experiments/edm_cifar10.py:ncsnpp_cond", "experiments/flow_cifar10.py"])
def test_first_training_steps_run_with_tiny_overrides(spec):
  exp = tiny(load(spec))
  exp = dataclasses.replace(exp, optim=dataclasses.replace(exp.optim, warmup_steps=0))
  family = families.build(exp, SMALL)
  state = jax.jit(family.init)(jax.random.key(0))
  step = jax.jit(family.train_step)
  losses = []
  for i in range(3):
    state, metrics = step(state, batch(seed=i), jax.random.key(10 + i))
    losses.append(float(metrics["loss"]))
  assert int(state.step) == 3 and all(np.isfinite(losses)), losses
  first = jax.jit(family.init)(jax.random.key(0))
  moved = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(first.params)))
  assert moved > 0


def test_augmentation_changes_the_training_loss_and_only_the_training_loss():
  from genjax.families import diffusion

  base = tiny(load("experiments/edm_cifar10.py:ddpmpp"))
  off_exp = dataclasses.replace(base, model=dataclasses.replace(base.model, augment_p=0.0))
  on, off = diffusion.make_model(base.model, SMALL), diffusion.make_model(off_exp.model, SMALL)
  params = jax.jit(families.build(base, SMALL).init)(jax.random.key(0)).params
  # the augment map's weights exist only with augmentation: give the unaugmented model the rest
  params_off = {k: v for k, v in params.items() if k != "map_augment"}
  assert "map_augment" in params
  assert set(params_off) == set(jax.eval_shape(families.build(off_exp, SMALL).init, jax.random.key(0)).params)
  b, rng = batch(8), jax.random.key(3)
  loss = jax.jit(lambda p, m: diffusion.loss(p, b, rng, m)[0], static_argnums=1)
  # with p = 0.12 some images are transformed (x-flips fire with probability 1/2 at any p)
  assert float(loss(params, on)) != pytest.approx(float(loss(params_off, off)), abs=1e-6)
  # held-out sums never augment: the same numbers with and without augmentation configured
  sums = jax.jit(lambda p, m: diffusion.eval_sums({"params": p}, b, rng, m)[0]["loss"], static_argnums=1)
  assert float(sums(params, on)) == pytest.approx(float(sums(params_off, off)), rel=1e-6)
