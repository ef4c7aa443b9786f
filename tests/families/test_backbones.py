"""Every backbone drives the diffusion family's formulations: the DiT under ddpm (fixed and learned
variances), edm and flow (the ADM U-Net and EDM's SongUNet train in test_cifar10_recipes.py). Networks whose output starts at zero (DiT's
adaLN-Zero, ADM's zero output convolution) make each loss at init a closed form of the inputs the
family drew, computed here in numpy; then a train step moves the weights and sampling runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as C
from genjax import families
from genjax.config import ConfigError
from genjax.data.info import DataInfo
from genjax.families import diffusion
from genjax.families.diffusion import SampleOptions

INFO = DataInfo(name="digits", kind="image", shape=(8, 8, 1), num_classes=10)
NETS = {
  "dit": dict(backbone="dit", patch_size=2, hidden_size=32, depth=2, num_heads=4),
}
FORMULATION = {
  "ddpm": dict(timesteps=40, sampler="ddim", sample_steps=3),
  "ddpm_learned": dict(timesteps=40, sampler="ddpm", sample_steps=5, variance="learned_range"),
  "edm": dict(formulation="edm", sampler="heun", sample_steps=2),
  "flow": dict(formulation="flow", sampler="euler", sample_steps=2),
}


def experiment(net, formulation):
  model = diffusion.Config(class_conditional=True, guidance_scale=2.0, **NETS[net], **FORMULATION[formulation])
  return C.Experiment(
    family="diffusion", model=model, optim=C.Optim(learning_rate=1e-3), train=C.Train(steps=4, batch_size=8)
  )


def batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": jnp.asarray(rng.uniform(-1, 1, (n, 8, 8, 1)), jnp.float32),
    "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32),
  }


def loss_of_a_zero_network(model, b, rng):
  """Each formulation's loss when the network outputs 0, from the family's own draws (float64)."""
  cfg = model.config
  if cfg.formulation == "ddpm" and cfg.variance == "learned_range":
    return learned_variance_loss_of_a_zero_network(model, b, rng)
  if cfg.formulation == "ddpm":  # eps prediction: |0 - eps|^2
    _, _, noise, _ = diffusion.noisy_inputs(b, rng, model)
    return (np.asarray(noise, np.float64) ** 2).mean()
  if cfg.formulation == "flow":  # |0 - (x1 - x0)|^2
    x1, _, noise, _ = diffusion.flow_inputs(b, rng, model)
    return ((np.asarray(x1, np.float64) - np.asarray(noise, np.float64)) ** 2).mean()
  x0, sigma_B, noise, _ = diffusion.edm_inputs(b, rng, model)  # D = c_skip x, weight 1 / c_out^2
  s = np.asarray(sigma_B, np.float64)[:, None, None, None]
  x0 = np.asarray(x0, np.float64)
  d = 0.25 / (s**2 + 0.25) * (x0 + s * np.asarray(noise, np.float64))
  weight = (s**2 + 0.25) / (0.5 * s) ** 2
  return (weight * (d - x0) ** 2).mean(axis=(1, 2, 3)).mean()


def learned_variance_loss_of_a_zero_network(model, b, rng):
  """Nichol and Dhariwal's hybrid loss when the network outputs 0: eps_hat = 0 (so x0_hat =
  x_t / sqrt(ab_t)) and v = 0 (log sigma^2 halfway between log beta_t and log beta_tilde_t):
  |eps|^2 + the bound's term at t in bits per dimension, written out in numpy."""
  from scipy import stats

  x0, t_B, noise, _ = (np.asarray(a, np.float64) for a in diffusion.noisy_inputs(b, rng, model))
  t = t_B.astype(int)
  betas = np.linspace(1e-4 * 1000 / 40, 0.02 * 1000 / 40, 40)  # the linear schedule scaled to T = 40
  ab = np.cumprod(1 - betas)
  ab_prev = np.append(1.0, ab[:-1])
  post_var = betas * (1 - ab_prev) / (1 - ab)
  col = lambda a: a[t][:, None, None, None]
  xt = np.sqrt(col(ab)) * x0 + np.sqrt(1 - col(ab)) * noise
  coef_x0, coef_xt = np.sqrt(ab_prev) * betas / (1 - ab), np.sqrt(1 - betas) * (1 - ab_prev) / (1 - ab)
  true_mean = col(coef_x0) * x0 + col(coef_xt) * xt
  model_mean = col(coef_x0) * (xt / np.sqrt(col(ab))) + col(coef_xt) * xt
  log_clipped = np.log(np.append(post_var[1], post_var[1:]))
  model_logvar = 0.5 * (np.log(col(betas)) + col(log_clipped))
  kl = 0.5 * (-1 + model_logvar - col(log_clipped) + np.exp(col(log_clipped) - model_logvar))
  kl = kl + 0.5 * (true_mean - model_mean) ** 2 * np.exp(-model_logvar)
  sd = np.exp(0.5 * model_logvar)
  upper = np.where(x0 > 0.999, 1.0, stats.norm.cdf((x0 - model_mean + 1 / 255) / sd))
  lower = np.where(x0 < -0.999, 0.0, stats.norm.cdf((x0 - model_mean - 1 / 255) / sd))
  decoder = -np.log(np.maximum(upper - lower, 1e-12))
  vb_B = np.where(t == 0, decoder.mean(axis=(1, 2, 3)), kl.mean(axis=(1, 2, 3))) / np.log(2)
  return (noise**2).mean() + vb_B.mean()


@pytest.mark.parametrize(
  "net,formulation",
  # (the ADM U-Net and EDM's NCSN++ train and sample under edm and flow in test_cifar10_recipes.py)
  [("dit", "ddpm"), ("dit", "ddpm_learned"), ("dit", "edm"), ("dit", "flow")],
)
def test_backbone_trains_and_samples_under_the_formulation(net, formulation):
  exp = experiment(net, formulation)
  family, model = families.build(exp, INFO), diffusion.make_model(exp.model, INFO)
  state = jax.jit(family.init)(jax.random.key(0))
  b, rng = batch(), jax.random.key(5)
  value, _ = jax.jit(diffusion.loss, static_argnames="model")(state.params, b, rng, model)
  want = loss_of_a_zero_network(model, b, rng)
  # adaLN-Zero and the zeroed final layer: the DiT's output starts at exactly zero
  np.testing.assert_allclose(float(value), want, rtol=1e-5)
  step = jax.jit(family.train_step)
  for i in range(2):
    state, metrics = step(state, batch(seed=i), jax.random.key(i))
  assert np.isfinite(float(metrics["loss"]))
  # the network's output is no longer zero: the loss at the same draw moved away from the closed form
  moved, _ = jax.jit(diffusion.loss, static_argnames="model")(state.params, b, rng, model)
  assert abs(float(moved) - want) > 1e-4
  x = family.sample(state.variables(), jax.random.key(0), 3, SampleOptions(label=4))
  assert x.shape == (3, 8, 8, 1) and bool(jnp.all(jnp.isfinite(x)))
  assert diffusion.backbones.describe(exp.model).split()[0] in family.notes


def test_dit_is_a_transformer_of_the_configured_size():
  family = families.build(experiment("dit", "flow"), INFO)
  params = jax.eval_shape(family.init, jax.random.key(0)).params
  n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  # two blocks of width 32: each attention (4 * 32^2 + 4 * 32), MLP (8 * 32^2 + 5 * 32) and
  # adaLN (6 * 32^2 + 6 * 32), i.e. 18 * 32^2 + 15 * 32 = 18,912 per block
  blocks = sum(
    int(np.prod(p.shape)) for path, p in jax.tree_util.tree_flatten_with_path(params)[0] if "blocks" in str(path[0])
  )
  assert blocks == 2 * (18 * 32**2 + 15 * 32) and n > blocks


@pytest.mark.parametrize(
  "override,phrase",
  [
    (dict(backbone="dit", patch_size=3), "patch_size = 3 does not divide"),
    (dict(backbone="dit", hidden_size=30, num_heads=4), "must split evenly into num_heads"),
    (dict(backbone="adm", num_head_channels=24), "num_head_channels = 24 must divide"),
    (dict(backbone="ddpmpp", num_heads=2), "attends with one head"),
    (dict(backbone="adm", augment_p=0.12), "non-leaky only when its labels"),
    (dict(backbone="unet", ch_mult=(1, 2, 2, 2, 2)), "halves 8x8 images 4 times"),
    (dict(backbone="vit"), "is not one of unet, ddpmpp, ncsnpp, adm, dit"),
  ],
)
def test_bad_backbone_settings_are_one_paragraph_before_anything_compiles(override, phrase):
  model = diffusion.Config(**{**dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,)), **override})
  with pytest.raises(ConfigError) as e:
    diffusion.make_model(model, INFO)
  assert phrase in " ".join(str(e.value).split())
