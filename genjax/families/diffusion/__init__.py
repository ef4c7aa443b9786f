"""Diffusion models in three formulations, with classifier-free guidance (Ho and Salimans 2021):

  "ddpm"  denoising diffusion probabilistic models (Ho et al. 2020) on T discrete steps, sampled
          with ddpm, ddim or dpmpp_2m, or with EDM's samplers (the epsilon model seen as a VP
          denoiser), and their variational bound;
  "edm"   Karras et al. 2022: a sigma-parameterised denoiser with Table 1's preconditioning
          (edm, vp or ve), ln sigma ~ N(P_mean, P_std^2) and the loss weight lambda(sigma),
          sampled with heun (Algorithm 1), euler or edm_sde (Algorithm 2);
  "flow"  flow matching on the optimal-transport path (Lipman et al. 2023; sigma_min = 0 is
          rectified flow, Liu et al. 2023): a velocity network v(x, t), t uniform or logit-normal,
          sampled by diffrax with euler, heun or dopri5, and its exact log-likelihood (the
          instantaneous change of variables, Hutchinson's divergence estimate) in bits/dim.

  schedules.py   linear and cosine betas; q(x_t | x_0) and q(x_{t-1} | x_t, x_0)
  objectives.py  eps / x0 / v prediction; the simple loss; the variational bound's terms
  samplers.py    ddpm, ddim, dpmpp_2m by name, each one `lax.scan`
  edm.py         EDM's preconditioning, training sigmas, loss weights and samplers
  flow.py        flow matching's path, loss, ODE sampling and log-likelihood (through diffrax)
  likelihood.py  the full bound and its one-term estimate, in nats and bits/dim

The pure functions take `model`, a `Diffusion` (the U-Net, the config, the image shape and the
classes): `loss(params, batch, rng, model)`, `eval_sums`, `sample(variables, rng, n, model,
options)` with a `SampleOptions`, and `evaluate` (the full bound): the family contract of
genjax.families.base, whose assembler binds them for the trainer; sampling and evaluation use the
EMA weights when the state has them.

Class conditioning: with `class_conditional`, labels are replaced by the null label
`num_classes` with probability `label_dropout` while training, and sampling mixes the
conditional and unconditional outputs, out = out_null + s (out_label - out_null), with s the
guidance scale (s = 1: plain conditional sampling, one network evaluation per step; s > 1:
guided, both evaluations in one batch of 2n). Likelihoods are those of the unconditional model
p(x) (null label), which is what bits/dim tables compare.
"""

import dataclasses
import functools
import math
from typing import Literal, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors
from genjax.config import ConfigError, Experiment
from genjax.core import flops
from genjax.core import step as step_lib
from genjax.core.parallel import example_keys
from genjax.data.datasets import first_examples
from genjax.data.info import DataInfo
from genjax.families import base
from genjax.families.diffusion import backbones, latent, likelihood, objectives, samplers, schedules
from genjax.families.diffusion import edm as edm_lib
from genjax.families.diffusion import flow as flow_lib
from genjax.nn import dit as dit_lib


@dataclasses.dataclass(frozen=True)
class Config:
  """The denoiser network, the diffusion and the default sampler. Defaults: DDPM's CIFAR-10 model."""

  # The network (backbones.py): "unet" (DDPM's), "ddpmpp" / "ncsnpp" (EDM's SongUNet), "adm"
  # (Dhariwal and Nichol's) or "dit" (Peebles and Xie's). The U-Net fields below serve the four
  # U-Nets (Ho et al. 2020, appendix B, for "unet"), the DiT fields the transformer.
  backbone: Literal["unet", "ddpmpp", "ncsnpp", "adm", "dit"] = "unet"
  ch: int = 128
  ch_mult: Tuple[int, ...] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Tuple[int, ...] = (16,)  # feature-map sizes (height) that get self-attention
  dropout: float = 0.1
  num_heads: int = 1  # attention heads (ddpmpp and ncsnpp: 1, as EDM's SongUNet)
  # EDM's non-leaky augmentation (augment.py, Karras et al. 2022 appendix F.2): the probability of
  # each geometric transform; its labels condition the network (ddpmpp / ncsnpp only). 0: off.
  augment_p: float = 0.0
  num_head_channels: Optional[int] = None  # adm: channels per head (None: num_heads heads)
  resblock_updown: bool = False  # adm: resample inside residual blocks
  conv_resample: bool = True  # adm: a 3x3 convolution after each up- and downsampling
  patch_size: int = 2  # dit (defaults: DiT-XL/2)
  hidden_size: int = 1152
  depth: int = 28
  mlp_ratio: float = 4.0
  # The diffusion.
  schedule: Literal["linear", "cosine"] = "linear"
  timesteps: int = 1000
  beta_start: float = 1e-4  # linear schedule, for T = 1000 (scaled by 1000 / T otherwise)
  beta_end: float = 0.02
  prediction: Literal["eps", "x0", "v"] = "eps"
  loss: Literal["simple", "vlb"] = "simple"  # L_simple (MSE on the prediction) or the bound's L_t
  # sigma_t^2 = beta_t or beta_tilde_t, or learned between them ("learned_range": the network
  # outputs twice the channels and trains them with Nichol and Dhariwal's hybrid loss, as DiT)
  variance: Literal["fixedlarge", "fixedsmall", "learned_range"] = "fixedlarge"
  clip_denoised: bool = True  # clip x0_hat to [-1, 1] when sampling and evaluating the bound
  # Classifier-free guidance.
  class_conditional: bool = False
  label_dropout: float = 0.1
  guidance_scale: float = 1.0
  # Family.sample's defaults (python -m genjax.sample can override each).
  sampler: Literal["ddpm", "ddim", "dpmpp_2m", "heun", "euler", "edm_sde", "dopri5"] = "ddpm"
  sample_steps: Optional[int] = None  # None: all T for ddpm, 50 ddim, 20 dpmpp_2m, 18 heun, 35 euler
  eta: float = 0.0  # DDIM's eta
  # The formulation: "ddpm" (T discrete steps, the fields above) or "edm" (Karras et al. 2022; the
  # fields below, defaults those of the paper's "EDM" column of Table 1 and its sampler).
  formulation: Literal["ddpm", "edm", "flow"] = "ddpm"
  preconditioning: Literal["edm", "vp", "ve"] = "edm"
  sigma_data: float = 0.5
  p_mean: float = -1.2  # ln sigma ~ N(p_mean, p_std^2) while training (preconditioning edm)
  p_std: float = 1.2
  ve_sigma_min: float = 0.02  # ln sigma ~ U(ln min, ln max) while training (preconditioning ve)
  ve_sigma_max: float = 100.0
  # EDM's samplers (also on ddpm models, within their T noise levels): time steps of eq. 5 ...
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  # ... and Algorithm 2's churn (edm_sde; s_tmax None: no upper bound)
  s_churn: float = 0.0
  s_tmin: float = 0.0
  s_tmax: Optional[float] = None
  s_noise: float = 1.0

  # Flow matching ("flow"; flow.py's FlowConfig, defaults Lipman et al.'s path with rectified
  # flow's sigma_min = 0 and uniform t): the path, the training times, dopri5's tolerances, and
  # the probes of Hutchinson's estimator in Family.evaluate's log-likelihood.
  flow_sigma_min: float = 0.0
  flow_time_sampling: Literal["uniform", "logit_normal"] = "uniform"
  flow_logit_mean: float = 0.0
  flow_logit_std: float = 1.0
  flow_rtol: float = 1e-5
  flow_atol: float = 1e-5
  flow_max_steps: int = 4096
  flow_probes: int = 1
  flow_time_grid: Literal["uniform", "edm"] = "uniform"  # euler / heun: uniform t, or EDM's noise levels
  # The network's time input is flow_time_scale * t: 999 puts t in the range of DDPM's step indices,
  # which DDPM's U-Net embedding was built for (as rectified flow's code); 1 is the flow-matching
  # code's own convention (its ADM U-Net embeds t in [0, 1] directly).
  flow_time_scale: float = 999.0

  def flow(self) -> flow_lib.FlowConfig:
    """The flow_* fields as flow.py's FlowConfig."""
    return flow_lib.FlowConfig(
      sigma_min=self.flow_sigma_min,
      time_sampling=self.flow_time_sampling,
      logit_mean=self.flow_logit_mean,
      logit_std=self.flow_logit_std,
      rtol=self.flow_rtol,
      atol=self.flow_atol,
      max_steps=self.flow_max_steps,
      time_grid=self.flow_time_grid,
    )

  def edm(self) -> edm_lib.EDMConfig:
    """The EDM fields as edm.py's EDMConfig."""
    return edm_lib.EDMConfig(
      preconditioning=self.preconditioning,
      sigma_data=self.sigma_data,
      p_mean=self.p_mean,
      p_std=self.p_std,
      ve_sigma_min=self.ve_sigma_min,
      ve_sigma_max=self.ve_sigma_max,
      sigma_min=self.sigma_min,
      sigma_max=self.sigma_max,
      rho=self.rho,
      s_churn=self.s_churn,
      s_tmin=self.s_tmin,
      s_tmax=float("inf") if self.s_tmax is None else self.s_tmax,
      s_noise=self.s_noise,
    )

  # Latent diffusion (latent.py, Rombach et al. 2022): a frozen autoencoder whose latents the
  # network models: a .safetensors file of an AutoencoderKL (Stable Diffusion's KL-f8), a diffusers
  # folder or a genjax autoencoder run's workdir; latents are scaled by latent_scale (SD's
  # 0.18215; for your own autoencoder, 1 / the std of its latents). None: pixel space.
  autoencoder: Optional[str] = None
  latent_scale: float = 0.18215
  # Encode each training image once, into $GENJAX_HOME/latent_cache/ (latent.py), instead of in
  # every step: the step draws the latents from the stored posterior moments.
  latent_cache: bool = False

  # Family.evaluate computes the whole bound (ddpm: T network evaluations per image; flow: the
  # ODE log-likelihood) on the first eval_max_examples images of the split; None: the whole split.
  eval_max_examples: Optional[int] = None


# Steps of each sampler when neither the call nor the config (for its own sampler) says.
DEFAULT_STEPS = {"ddim": 50, "dpmpp_2m": 20, "heun": 18, "euler": 35, "edm_sde": 18}  # ddpm: all T; dopri5: adaptive
DISCRETE_SAMPLERS = tuple(samplers.SAMPLERS)  # they need a model trained on T discrete steps
ALL_SAMPLERS = DISCRETE_SAMPLERS + edm_lib.SAMPLERS + ("dopri5",)
FORMULATIONS = ("ddpm", "edm", "flow")


def samplers_of(formulation: str) -> Tuple[str, ...]:
  """The samplers that can drive a model of this formulation."""
  if formulation == "flow":
    return flow_lib.SAMPLERS
  return edm_lib.SAMPLERS if formulation == "edm" else DISCRETE_SAMPLERS + edm_lib.SAMPLERS


def check_sampler(sampler: str, cfg: "Config", where: str = "sampler") -> None:
  """ValueError for an unknown sampler or one the model's formulation cannot drive."""
  if sampler not in ALL_SAMPLERS:
    raise errors.ConfigError(f"{where} = {sampler!r} is not one of {', '.join(ALL_SAMPLERS)}.")
  if sampler not in samplers_of(cfg.formulation):
    why = {"edm_sde": "adds noise along EDM's sigma schedule", "dopri5": "solves a flow-matching model's ODE"}
    why = "walks DDPM's T discrete steps" if sampler in DISCRETE_SAMPLERS else why[sampler]
    raise errors.ConfigError(
      f"{where} = {sampler!r} {why}, which a model of formulation {cfg.formulation!r} was not "
      f"trained for; sample it with one of {', '.join(samplers_of(cfg.formulation))} (e.g. --sampler heun)."
    )


def check_config(cfg: Config, info: DataInfo) -> None:
  """Raises ConfigError, before anything compiles, for settings that cannot work with the data."""
  if info.kind != "image":
    raise ConfigError(f"The diffusion family models images; dataset {info.name!r} is {info.kind}.")
  backbones.check(cfg, info)
  if cfg.class_conditional and not info.num_classes:
    raise ConfigError(f"config.model.class_conditional needs labelled data; {info.name!r} has no classes.")
  if cfg.guidance_scale != 1.0 and not cfg.class_conditional:
    raise ConfigError("config.model.guidance_scale != 1 needs model.class_conditional=True.")
  if not 0 <= cfg.label_dropout < 1:
    raise ConfigError(f"config.model.label_dropout = {cfg.label_dropout} must lie in [0, 1).")
  if not 0 <= cfg.dropout < 1:
    raise ConfigError(f"config.model.dropout = {cfg.dropout} must lie in [0, 1).")
  if cfg.formulation not in FORMULATIONS:
    raise ConfigError(f"config.model.formulation = {cfg.formulation!r} is not one of {', '.join(FORMULATIONS)}.")
  if cfg.formulation != "ddpm" and cfg.variance == "learned_range":
    raise ConfigError(
      f"config.model.variance = 'learned_range' learns DDPM's reverse variances; a model of formulation "
      f"{cfg.formulation!r} has none: leave config.model.variance at 'fixedlarge'."
    )
  if cfg.formulation != "ddpm" and cfg.loss != "simple":
    raise ConfigError(
      f"config.model.loss = {cfg.loss!r} is DDPM's variational bound; a model of formulation "
      f"{cfg.formulation!r} trains with its own loss: leave config.model.loss at 'simple'."
    )
  if cfg.formulation == "flow" and not flow_lib.diffrax_available():
    raise ConfigError(f"config.model.formulation = 'flow': {flow_lib.MISSING_DIFFRAX}")
  if cfg.flow_probes < 1:
    raise ConfigError(
      f"config.model.flow_probes = {cfg.flow_probes} must be at least 1 (Hutchinson's probes per image "
      "in the flow's log-likelihood)."
    )
  if not cfg.flow_time_scale > 0:
    raise ConfigError(
      f"config.model.flow_time_scale = {cfg.flow_time_scale} must be positive (999: DDPM's step range, 1: t itself)."
    )
  try:
    edm_lib.check(cfg.edm())
    flow_lib.check(cfg.flow())
    check_sampler(cfg.sampler, cfg, "config.model.sampler")
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if cfg.timesteps < 1:
    raise ConfigError(
      f"config.model.timesteps = {cfg.timesteps} must be a positive number of diffusion steps T (1000 in DDPM)."
    )
  try:
    schedules.make_schedule(cfg.schedule, cfg.timesteps, cfg.beta_start, cfg.beta_end)
    if cfg.sample_steps is not None:
      if cfg.sampler in DISCRETE_SAMPLERS:
        samplers.timesteps(cfg.timesteps, cfg.sample_steps)
      elif cfg.sample_steps < 1:
        raise errors.ConfigError(f"sample_steps = {cfg.sample_steps} must be at least 1.")
  except ValueError as e:
    raise ConfigError(f"config.model: {e}") from e


@dataclasses.dataclass(frozen=True)
class Diffusion:
  """What the pure functions take as `model`: the config, the network (a backbones.py module),
  the image shape and the number of classes (None: unconditional; label num_classes is the null
  label)."""

  config: Config
  net: nn.Module
  image_shape: Tuple[int, int, int]  # what the network models: the images', or their latents'
  num_classes: Optional[int] = None
  autoencoder: Optional[latent.Frozen] = None  # latent diffusion's frozen autoencoder

  def schedule(self) -> schedules.Schedule:
    """The noise schedule's tables (computed in float64 numpy, stored float32)."""
    cfg = self.config
    return schedules.make_schedule(cfg.schedule, cfg.timesteps, cfg.beta_start, cfg.beta_end)


def make_model(cfg: Config, info: DataInfo, dtype=jnp.float32) -> Diffusion:
  frozen = None
  if cfg.latent_cache and cfg.autoencoder is None:
    raise ConfigError(
      "config.model.latent_cache=True caches an autoencoder's latents, but config.model.autoencoder is None. "
      "Name the autoencoder (a .safetensors file, a diffusers folder or a genjax autoencoder run), or drop latent_cache."
    )
  if cfg.autoencoder is not None:
    if info.kind != "image":
      raise ConfigError(f"The diffusion family models images; dataset {info.name!r} is {info.kind}.")
    if not cfg.latent_scale > 0:
      raise ConfigError(f"config.model.latent_scale = {cfg.latent_scale} must be positive (SD's KL-f8: 0.18215).")
    frozen = latent.load(cfg.autoencoder, cfg.latent_scale)
    info = latent.latent_info(info, frozen)
  check_config(cfg, info)
  num_classes = info.num_classes if cfg.class_conditional else None
  return Diffusion(cfg, backbones.make(cfg, info, num_classes, dtype), tuple(info.shape), num_classes, frozen)


# ----------------------------------------------------------------------------------------------
# The network as a denoiser
# ----------------------------------------------------------------------------------------------


def apply(variables, xt, t_B, labels_B, model: Diffusion, train: bool = False, rng=None, augment_BxA=None):
  """The network's raw output at (x_t, t) for labels_B (ignored by unconditional models) and, while
  training with EDM's augmentation, its labels augment_BxA (None: not augmented)."""
  rngs = {"dropout": rng} if train else None
  labels_B = labels_B if model.num_classes else None
  variables = {k: v for k, v in variables.items() if k != latent.COLLECTION}
  if augment_BxA is None:
    return model.net.apply(variables, xt, t_B, labels_B, train=train, rngs=rngs)
  return model.net.apply(variables, xt, t_B, labels_B, train=train, rngs=rngs, augment_BxA=augment_BxA)


def augmented(batch, rng, model: Diffusion, train: bool):
  """(batch, augmentation labels f32[B, A]) with each training image put through EDM's
  augmentation (augment.py) with its own example key, so every parallel mode draws the same; the
  batch as it is and None when not training or config.model.augment_p is 0."""
  if not train or not model.config.augment_p:
    return batch, None
  from genjax.families.diffusion import augment as augment_lib

  aug_cfg = backbones.augment_config(model.config)
  keys = example_keys(jax.random.fold_in(rng, 4), batch["image"].shape[0])
  one = lambda k, x: augment_lib.augment(k, x[None], aug_cfg)
  images, labels = jax.vmap(one)(keys, batch["image"].astype(jnp.float32))
  return {**batch, "image": images[:, 0]}, labels[:, 0]


def guided(variables, x, t_B, labels_B, model: Diffusion, guidance_scale: float = 1.0):
  """The network's output at (x, t) with classifier-free guidance when guidance_scale != 1:
  out_null + s (out_label - out_null), both evaluations in one batch of 2n; a learned variance
  is the conditional one, unguided (as DiT's forward_with_cfg keeps each half's); f32."""
  if model.num_classes and guidance_scale != 1.0:
    n = x.shape[0]
    both = apply(
      variables,
      jnp.concatenate([x, x]),
      jnp.concatenate([t_B, t_B]),
      jnp.concatenate([labels_B, jnp.full_like(labels_B, model.num_classes)]),
      model,
    ).astype(jnp.float32)
    pred, v = objectives.split_output(both, model.config.variance)
    pred = pred[n:] + guidance_scale * (pred[:n] - pred[n:])
    return pred if v is None else jnp.concatenate([pred, v[:n]], axis=-1)
  return apply(variables, x, t_B, labels_B, model).astype(jnp.float32)


def denoiser(variables, labels_B, model: Diffusion, guidance_scale: float = 1.0, with_variance: bool = False):
  """model_fn(x_t, t_B) -> (x0_hat, eps_hat) of a "ddpm" model, with classifier-free guidance
  when guidance_scale != 1; with_variance: (x0_hat, eps_hat, v), v the learned variance output
  (None for fixed variances)."""
  sched, cfg = model.schedule(), model.config

  def model_fn(xt, t_B):
    pred, v = objectives.split_output(guided(variables, xt, t_B, labels_B, model, guidance_scale), cfg.variance)
    x0_hat, eps_hat = objectives.to_x0_eps(sched, pred, xt, t_B, cfg.prediction)
    return (x0_hat, eps_hat, v) if with_variance else (x0_hat, eps_hat)

  return model_fn


def sigma_denoiser(variables, labels_B, model: Diffusion, guidance_scale: float = 1.0):
  """(denoise(x, sigma_B) -> x0_hat, round_sigma or None, (sigma_lo, sigma_hi)) for EDM's
  samplers: an "edm" model's preconditioned U-Net, or a "ddpm" model's epsilon U-Net seen as a
  VP denoiser on its T noise levels (which also bound the sampler's sigmas)."""
  cfg = model.config
  if cfg.formulation == "edm":
    net = lambda x_in, c_noise_B: guided(variables, x_in, c_noise_B, labels_B, model, guidance_scale)
    return edm_lib.denoiser_from_network(net, cfg.preconditioning, cfg.sigma_data), None, (0.0, float("inf"))
  ab = model.schedule().alphas_cumprod
  with jax.ensure_compile_time_eval():
    levels = edm_lib.ddpm_sigmas(np.asarray(ab))
  denoise = edm_lib.denoiser_from_ddpm(denoiser(variables, labels_B, model, guidance_scale), ab)
  return denoise, edm_lib.round_sigma_to(levels), (float(levels[0]), float(levels[-1]))


def _keys_and_labels(batch, rng, model: Diffusion):
  keys = example_keys(rng, batch["image"].shape[0])
  labels = None
  if model.num_classes:
    drop = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 2), model.config.label_dropout))(keys)
    labels = jnp.where(drop, model.num_classes, batch["label"].astype(jnp.int32))
  return keys, labels


def _example_inputs(batch, rng, model: Diffusion, level):
  """The images, a per-example noise level level(key), standard normal noise and (dropped) labels,
  all from example keys: the same in every parallel mode."""
  x = batch["image"].astype(jnp.float32)
  keys, labels = _keys_and_labels(batch, rng, model)
  level_B = jax.vmap(lambda k: level(jax.random.fold_in(k, 0)))(keys)
  noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), x.shape[1:]))(keys)
  return x, level_B, noise, labels


def noisy_inputs(batch, rng, model: Diffusion):
  """A "ddpm" model's per-example x0, uniform time step t, noise and (dropped) labels."""
  return _example_inputs(batch, rng, model, lambda k: jax.random.randint(k, (), 0, model.config.timesteps))


def edm_inputs(batch, rng, model: Diffusion):
  """An "edm" model's per-example x0, training sigma, noise and (dropped) labels."""
  edm_cfg = model.config.edm()
  return _example_inputs(batch, rng, model, lambda k: edm_lib.training_sigma(k, edm_cfg))


def edm_loss_terms(variables, batch, rng, model: Diffusion, train: bool):
  """(lambda(sigma)-weighted loss, denoising MSE) per example of an "edm" model: two f32[B]."""
  batch, aug = augmented(batch, rng, model, train)
  x0, sigma_B, noise, labels = edm_inputs(batch, rng, model)
  drop = jax.random.fold_in(rng, 3) if train else None
  net = lambda x_in, c_noise_B: apply(variables, x_in, c_noise_B, labels, model, train, drop, aug)
  denoise = edm_lib.denoiser_from_network(net, model.config.preconditioning, model.config.sigma_data)
  return edm_lib.weighted_loss(denoise, x0, sigma_B, noise, model.config.edm())


def velocity_fn(variables, labels_B, model: Diffusion, guidance_scale: float = 1.0):
  """velocity(x, t_B) -> v of a "flow" model (t in [0, 1], noise to data), with classifier-free
  guidance (v_null + s (v_label - v_null)) when guidance_scale != 1; f32."""
  scale = model.config.flow_time_scale
  return lambda x, t_B: guided(variables, x, scale * t_B, labels_B, model, guidance_scale)


def flow_inputs(batch, rng, model: Diffusion):
  """A "flow" model's per-example data x1, training time t, noise x0 and (dropped) labels."""
  flow_cfg = model.config.flow()
  return _example_inputs(batch, rng, model, lambda k: flow_lib.training_time(k, flow_cfg))


def flow_loss_terms(variables, batch, rng, model: Diffusion, train: bool):
  """The conditional flow matching loss per example of a "flow" model: f32[B]."""
  batch, aug = augmented(batch, rng, model, train)
  x1, t_B, noise, labels = flow_inputs(batch, rng, model)
  flow_cfg = model.config.flow()
  drop = jax.random.fold_in(rng, 3) if train else None
  scale = model.config.flow_time_scale
  velocity = lambda x, t: apply(variables, x, scale * t, labels, model, train, drop, aug)
  return flow_lib.loss_terms(velocity, x1, t_B, noise, flow_cfg.sigma_min)


# ----------------------------------------------------------------------------------------------
# Pure functions: loss, evaluation, sampling (call them under your own jax.jit)
# ----------------------------------------------------------------------------------------------


def loss(params, batch, rng, model: Diffusion):
  """ "ddpm": L_simple (MSE on the prediction) or the bound's L_t in bits/dim, at one uniform t per
  example; "edm": lambda(sigma) |D(x0 + sigma n; sigma) - x0|^2 at one training sigma per
  example; "flow": |v(x_t, t) - u_t|^2 at one training time per example; with dropout:
  (loss, {"loss", "mse"})."""
  cfg, sched = model.config, model.schedule()
  if cfg.formulation == "flow":
    value = jnp.mean(flow_loss_terms({"params": params}, batch, rng, model, train=True))
    return value, {"loss": value, "mse": value}
  if cfg.formulation == "edm":
    weighted_B, mse_B = edm_loss_terms({"params": params}, batch, rng, model, train=True)
    value = jnp.mean(weighted_B)
    return value, {"loss": value, "mse": jnp.mean(mse_B)}
  batch, aug = augmented(batch, rng, model, train=True)
  x0, t_B, noise, labels = noisy_inputs(batch, rng, model)
  xt = schedules.q_sample(sched, x0, t_B, noise)
  out = apply({"params": params}, xt, t_B, labels, model, True, jax.random.fold_in(rng, 3), aug)
  out, v = objectives.split_output(out.astype(jnp.float32), cfg.variance)
  mse_B = jnp.mean((out - objectives.target(sched, x0, noise, t_B, cfg.prediction)) ** 2, axis=(1, 2, 3))
  x0_hat, _ = objectives.to_x0_eps(sched, out, xt, t_B, cfg.prediction)
  if cfg.loss == "simple":
    value, metrics = jnp.mean(mse_B), {}
    if v is not None:  # the hybrid loss: the variance learns from the bound's term alone
      vb = jnp.mean(objectives.hybrid_vb(sched, x0, xt, t_B, x0_hat, v))
      value, metrics = value + vb, {"vb": vb}
  else:  # L_t in bits/dim; uniform t makes it an unbiased estimate of the bound / T.
    value = jnp.mean(
      likelihood.nats_to_bits_per_dim(
        objectives.vlb_term(sched, x0, xt, t_B, x0_hat, cfg.variance, v), math.prod(model.image_shape)
      )
    )
    metrics = {}
  return value, {"loss": value, "mse": jnp.mean(mse_B), **metrics}


def eval_sums(variables, batch, rng, model: Diffusion):
  """Sums over the real examples of the prediction's MSE and of the one-term estimate of the
  bound (bits/dim, of the unconditional model); "edm": of the weighted loss and the denoising
  MSE; "flow": of the flow matching loss; (sums, count)."""
  cfg, sched = model.config, model.schedule()
  mask_B = step_lib.batch_mask(batch, batch["image"].shape[0])
  batch = latent.encoded(variables.get(latent.COLLECTION), batch, rng, model.autoencoder)
  if cfg.formulation == "flow":
    loss_B = flow_loss_terms(variables, batch, rng, model, train=False)
    return step_lib.masked_sums({"loss": loss_B, "mse": loss_B}, mask_B)
  if cfg.formulation == "edm":
    weighted_B, mse_B = edm_loss_terms(variables, batch, rng, model, train=False)
    return step_lib.masked_sums({"loss": weighted_B, "mse": mse_B}, mask_B)
  x0, t_B, noise, labels = noisy_inputs(batch, rng, model)
  xt = schedules.q_sample(sched, x0, t_B, noise)
  out, _ = objectives.split_output(apply(variables, xt, t_B, labels, model).astype(jnp.float32), cfg.variance)
  mse_B = jnp.mean((out - objectives.target(sched, x0, noise, t_B, cfg.prediction)) ** 2, axis=(1, 2, 3))
  null = None if labels is None else jnp.full_like(labels, model.num_classes)
  bound_B = likelihood.bound_estimate(
    denoiser(variables, null, model, with_variance=True),
    sched,
    x0,
    t_B,
    noise,
    variance=cfg.variance,
    clip_denoised=cfg.clip_denoised,
  )
  if model.autoencoder is not None:  # a bound on latents is no pixel likelihood: none is reported
    return step_lib.masked_sums({"mse": mse_B}, mask_B)
  bpd_B = likelihood.nats_to_bits_per_dim(bound_B, math.prod(model.image_shape))
  return step_lib.masked_sums({"mse": mse_B, "bpd_estimate": bpd_B}, mask_B)


@functools.partial(jax.jit, static_argnames="model")
def full_bound(variables, x0, rng, model: Diffusion):
  """Every term of the bound of the unconditional model (null label), nats f32[B] each."""
  cfg = model.config
  labels = jnp.full((x0.shape[0],), model.num_classes or 0, jnp.int32)
  return likelihood.full_bound(
    denoiser(variables, labels, model, with_variance=True),
    model.schedule(),
    x0,
    rng,
    variance=cfg.variance,
    clip_denoised=cfg.clip_denoised,
  )


def full_bound_flops(variables, x0, rng, model: Diffusion) -> float:
  """XLA's FLOP count of one `full_bound` call: its loop's body (one term) counted T times."""
  cfg = model.config
  labels = jnp.full((x0.shape[0],), model.num_classes or 0, jnp.int32)
  one_term = jax.jit(
    lambda v, x, r: likelihood.bound_term(
      denoiser(v, labels, model, with_variance=True),
      model.schedule(),
      x,
      r,
      0,
      variance=cfg.variance,
      clip_denoised=cfg.clip_denoised,
    )
  )
  with_one_trip = flops.of_call(full_bound, variables, x0, rng, model)  # XLA counts the body once
  return with_one_trip + (model.schedule().num_timesteps - 1) * flops.of_call(one_term, variables, x0, rng)


@functools.partial(jax.jit, static_argnames="model")
def flow_log_likelihood(variables, x1, rng, model: Diffusion):
  """A "flow" model's log p(x1) in nats, f32[B], of the unconditional model (null label), by
  dopri5 on the augmented ODE with config.model.flow_probes Rademacher probes per image
  (Hutchinson), and the solver's accepted steps."""
  cfg, f = model.config, model.config.flow()
  labels = jnp.full((x1.shape[0],), model.num_classes or 0, jnp.int32)
  return flow_lib.log_likelihood(
    velocity_fn(variables, labels, model),
    x1,
    divergence="hutchinson",
    probes=flow_lib.rademacher_probes(rng, cfg.flow_probes, x1.shape),
    rtol=f.rtol,
    atol=f.atol,
    max_steps=f.max_steps,
  )


def flow_evaluate(variables, batches, rng, model: Diffusion, max_examples: Optional[int] = None):
  """A "flow" model's bits/dim on the batches (or their first max_examples images): the ODE
  log-likelihood at uniformly dequantized points (`flow.dequantized_bits_per_dim`), with its
  standard error over the images (which holds the probes' and the dequantization's noise)."""
  num_dims = math.prod(model.image_shape)
  bpd, steps = [], []
  for i, batch in enumerate(first_examples(batches, max_examples)):
    mask = np.asarray(batch.get("mask", np.ones(len(batch["image"]), np.float32))) > 0
    if not mask.any():
      break
    key = jax.random.fold_in(rng, i)
    x = jnp.asarray(batch["image"], jnp.float32)
    x = x + jax.random.uniform(jax.random.fold_in(key, 0), x.shape, minval=-1.0 / 255, maxval=1.0 / 255)
    log_p, n_steps = jax.device_get(flow_log_likelihood(variables, x, jax.random.fold_in(key, 1), model))
    if int(n_steps) < 0:
      f = model.config.flow()
      raise errors.NumericalError(flow_lib.out_of_steps(f.max_steps, f.rtol, f.atol, "The flow's log-likelihood"))
    bpd.append(np.asarray(flow_lib.dequantized_bits_per_dim(np.asarray(log_p, np.float64), num_dims))[mask])
    steps.append(int(n_steps))
  if not bpd:
    raise errors.ConfigError("diffusion evaluate: the evaluation batches held no examples.")
  bpd = np.concatenate(bpd)
  return {
    "bits_per_dim": float(bpd.mean()),
    "bits_per_dim_stderr": float(bpd.std(ddof=1) / math.sqrt(len(bpd))) if len(bpd) > 1 else float("nan"),
    "nll_nats": float(bpd.mean() * num_dims * math.log(2.0)),  # of the 8-bit images, as DDPM's bound
    "solver_steps": float(np.mean(steps)),
    "num_examples": int(len(bpd)),
  }


def evaluate(variables, batches, rng, model: Diffusion, max_examples: Optional[int] = None):
  """The whole bound on the batches (or their first max_examples images, default
  config.model.eval_max_examples): nats per image and bits/dim, split into the prior L_T, the
  diffusion terms and the decoder L_0; a "flow" model's exact likelihood instead (`flow_evaluate`).
  An "edm" model has no likelihood here (`evaluates`)."""
  if max_examples is None:
    max_examples = model.config.eval_max_examples
  if model.autoencoder is not None:
    raise errors.ConfigError(
      "This is a latent diffusion model: its bound or ODE likelihood would be one of the autoencoder's "
      "latents, not of pixels, so genjax reports no bits/dim for it. Evaluate its decoded samples instead: "
      "python -m genjax.evaluate --workdir W --metrics fd."
    )
  if model.config.formulation == "flow":
    return flow_evaluate(variables, batches, rng, model, max_examples)
  num_dims = math.prod(model.image_shape)
  totals = {"prior": 0.0, "diffusion": 0.0, "decoder": 0.0, "total": 0.0}
  count, total_flops, per_shape = 0, 0.0, {}
  for i, batch in enumerate(first_examples(batches, max_examples)):
    mask = np.asarray(batch.get("mask", np.ones(len(batch["image"]), np.float32)), np.float64)
    if not mask.any():
      break
    x0, key = jnp.asarray(batch["image"], jnp.float32), jax.random.fold_in(rng, i)
    if x0.shape not in per_shape:
      per_shape[x0.shape] = full_bound_flops(variables, x0, key, model)
    total_flops += per_shape[x0.shape]
    terms = jax.device_get(full_bound(variables, x0, key, model))
    for k in totals:
      totals[k] += float(np.sum(np.asarray(terms[k], np.float64) * mask))
    count += int(mask.sum())
  if count == 0:
    raise errors.ConfigError("diffusion evaluate: the evaluation batches held no examples.")
  bits = num_dims * math.log(2.0) * count
  return {
    "nll_nats": totals["total"] / count,
    "bits_per_dim": totals["total"] / bits,
    "prior_bpd": totals["prior"] / bits,
    "diffusion_bpd": totals["diffusion"] / bits,
    "decoder_bpd": totals["decoder"] / bits,
    "num_examples": count,
    "flops": total_flops,
  }


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """sampler: ddpm, ddim or dpmpp_2m (ddpm models), heun, euler or edm_sde (ddpm and edm models),
  euler, heun or dopri5 (flow models: diffrax's solvers of the flow's ODE); num_steps: time steps
  (ddpm: all T; EDM's heun and edm_sde evaluate the network 2 num_steps - 1 times, a flow's heun
  2 num_steps, the others num_steps; dopri5 adapts its steps to config.model.flow_rtol and
  flow_atol); eta: DDIM's noise; s_churn: edm_sde's churn;
  guidance_scale: classifier-free guidance; label: the class of every image (conditional models;
  default 0, 1, 2, ... in turn). None takes the experiment's default."""

  sampler: Optional[str] = None
  num_steps: Optional[int] = None
  eta: Optional[float] = None
  guidance_scale: Optional[float] = None
  label: Optional[int] = None
  s_churn: Optional[float] = None


def resolve_options(options: SampleOptions, model: Diffusion, exp=None, info=None) -> SampleOptions:
  """`options` with every None replaced by the model config's default; checks them (ConfigError)."""
  cfg = model.config
  sampler = options.sampler or cfg.sampler
  check_sampler(sampler, cfg)
  num_steps = options.num_steps
  if sampler == "dopri5":
    num_steps = 0  # adaptive: config.model.flow_rtol and flow_atol set its steps
  elif num_steps is None:  # the config's steps go with the config's sampler
    num_steps = (cfg.sample_steps if sampler == cfg.sampler else None) or DEFAULT_STEPS.get(sampler, cfg.timesteps)
    if sampler in DISCRETE_SAMPLERS:
      num_steps = min(num_steps, cfg.timesteps)
  if sampler in DISCRETE_SAMPLERS:
    samplers.timesteps(cfg.timesteps, int(num_steps))
  elif sampler != "dopri5" and int(num_steps) < 1:
    raise errors.ConfigError(f"num_steps = {num_steps} must be at least 1.")
  s_churn = float(cfg.s_churn if options.s_churn is None else options.s_churn)
  if s_churn < 0:
    raise errors.ConfigError(f"s_churn = {s_churn} must be zero (a deterministic sampler) or positive.")
  guidance = float(cfg.guidance_scale if options.guidance_scale is None else options.guidance_scale)
  if not cfg.class_conditional and (guidance != 1.0 or options.label is not None):
    raise errors.ConfigError(
      "label and guidance_scale != 1 need a class-conditional model (model.class_conditional=True)."
    )
  return SampleOptions(
    sampler=sampler,
    num_steps=int(num_steps),
    eta=float(cfg.eta if options.eta is None else options.eta),
    guidance_scale=guidance,
    label=options.label,
    s_churn=s_churn,
  )


@functools.partial(jax.jit, static_argnames=("n", "model", "sampler", "num_steps", "eta", "guidance_scale", "s_churn"))
def _sample(variables, rng, labels, *, n, model, sampler, num_steps, eta, guidance_scale, s_churn):
  cfg = model.config
  if cfg.formulation == "flow":
    f = cfg.flow()
    x, steps = flow_lib.sample(
      velocity_fn(variables, labels, model, guidance_scale),
      jax.random.normal(rng, (n, *model.image_shape)),
      sampler=sampler,
      num_steps=num_steps,
      rtol=f.rtol,
      atol=f.atol,
      max_steps=f.max_steps,
      time_grid=f.time_grid,
    )
    return jnp.where(steps >= 0, jnp.clip(x, -1.0, 1.0), jnp.nan)  # NaN: dopri5 ran out of steps
  if sampler in edm_lib.SAMPLERS:
    denoise, round_sigma, (lo, hi) = sigma_denoiser(variables, labels, model, guidance_scale)
    x = edm_lib.sample(
      denoise,
      rng,
      (n, *model.image_shape),
      sampler=sampler,
      num_steps=num_steps,
      sigma_min=max(cfg.sigma_min, lo),
      sigma_max=min(cfg.sigma_max, hi),
      rho=cfg.rho,
      s_churn=s_churn,
      s_tmin=cfg.s_tmin,
      s_tmax=float("inf") if cfg.s_tmax is None else cfg.s_tmax,
      s_noise=cfg.s_noise,
      round_sigma=round_sigma,
    )
    return jnp.clip(x, -1.0, 1.0)
  x = samplers.get(sampler)(
    denoiser(variables, labels, model, guidance_scale, with_variance=sampler == "ddpm"),
    model.schedule(),
    rng,
    (n, *model.image_shape),
    num_steps=num_steps,
    eta=eta,
    clip_denoised=cfg.clip_denoised,
    variance=cfg.variance,
  )
  return jnp.clip(x, -1.0, 1.0)


def sample(variables, rng, n: int, model: Diffusion, options: SampleOptions = SampleOptions(), labels=None):
  """n images f32[n, H, W, C] in [-1, 1], one compiled call (it may also be traced inside the
  caller's jit). Class-conditional models draw `labels` (int[n]), else options.label for every
  image, else 0, 1, ..., num_classes - 1, 0, 1, ..."""
  options = resolve_options(options, model)
  num_classes = model.num_classes
  if num_classes:
    if labels is None:
      labels = np.full((n,), options.label) if options.label is not None else np.arange(n) % num_classes
    if not isinstance(labels, jax.core.Tracer):
      labels = np.broadcast_to(np.asarray(labels), (n,))
      if labels.min() < 0 or labels.max() >= num_classes:
        raise errors.ConfigError(f"labels must lie in [0, {num_classes}), got {sorted(set(labels.tolist()))}.")
  else:
    if labels is not None:
      raise errors.ConfigError("labels need a class-conditional model (model.class_conditional=True).")
    labels = np.zeros((n,), np.int32)
  x = _sample(
    variables,
    rng,
    jnp.asarray(labels, jnp.int32),
    n=int(n),
    model=model,
    sampler=options.sampler,
    num_steps=options.num_steps,
    eta=options.eta,
    guidance_scale=options.guidance_scale,
    s_churn=options.s_churn,
  )
  if options.sampler == "dopri5" and not isinstance(x, jax.core.Tracer) and bool(jnp.isnan(x[0, 0, 0, 0])):
    f = model.config.flow()
    raise errors.NumericalError(flow_lib.out_of_steps(f.max_steps, f.rtol, f.atol, "Sampling"))
  if model.autoencoder is not None:  # latents -> images
    if latent.COLLECTION not in variables:
      raise errors.ConfigError(
        f"A latent model decodes its samples with the '{latent.COLLECTION}' collection of its variables."
      )
    return latent.decode(variables[latent.COLLECTION], x, model.autoencoder)
  return x


# ----------------------------------------------------------------------------------------------
# The adapter the trainer uses
# ----------------------------------------------------------------------------------------------

CONFIGS = (Config,)
SAMPLE_OPTIONS = {"Config": SampleOptions}
# tensor parallelism and FSDP split a DiT as they split the GPT (heads, MLP, adaLN); the U-Nets'
# parameter names match none of these rules, so FSDP alone shards them
PARTITION_RULES = dit_lib.PARTITION_RULES


# latent diffusion's autoencoder: carried by the state, never trained nor averaged
FROZEN_COLLECTIONS = (latent.COLLECTION,)


def init(rng, model: Diffusion):
  """Fresh network variables: {"params": ...}, and a latent model's frozen autoencoder."""
  x = jnp.zeros((1, *model.image_shape), jnp.float32)
  t, labels = jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32)
  params = jax.jit(lambda r: model.net.init(r, x, t, labels if model.num_classes else None))(rng)["params"]
  if model.autoencoder is None:
    return {"params": params}
  return {"params": params, latent.COLLECTION: jax.tree.map(jnp.asarray, model.autoencoder.variables)}


def train_data(dataset, exp: Experiment, model: Diffusion):
  """The training batches: a latent model with config.model.latent_cache reads its latents'
  moments from the cache (written once), any other model the images."""
  if model.autoencoder is None or not exp.model.latent_cache:
    return dataset
  return latent.cached(dataset, exp.data, exp.data.train_split, model.autoencoder)


def updates(model: Diffusion):
  """One update of the network from `loss`; a latent model's batches are encoded first with the
  frozen autoencoder the state carries."""

  def train_loss(params, state, batch, rng, i):
    batch = latent.encoded(state.extra.get(latent.COLLECTION), batch, rng, model.autoencoder)
    value, metrics = loss(params, batch, rng, model)
    return value, (metrics, {})

  return (step_lib.Update(train_loss),)


def evaluates(exp: Experiment) -> bool:
  """DDPM's variational bound, or a flow's ODE likelihood; an EDM model and a latent model have no
  pixel likelihood here (genjax.evaluate then computes sample metrics, FD by default)."""
  return exp.model.formulation != "edm" and exp.model.autoencoder is None


def layouts(model: Diffusion, n: int):
  """A class-conditional model's samples in columns by class (labels cycle 0, 1, ...)."""
  K = model.num_classes
  if not K:
    return {}
  return {"samples": base.Layout(ncols=K, cols=tuple(str(k) for k in range(K)), caption="one class per column")}


def notes(exp: Experiment, model: Diffusion) -> str:
  cfg = model.config
  steps = cfg.sample_steps or DEFAULT_STEPS.get(cfg.sampler, cfg.timesteps)
  guided = 2 if cfg.guidance_scale != 1.0 else 1
  if cfg.formulation == "flow":
    what = f"flow matching (sigma_min={cfg.flow_sigma_min}, t {cfg.flow_time_sampling})"
    evals = (
      "an adaptive number of (dopri5)" if cfg.sampler == "dopri5" else flow_lib.evaluations(cfg.sampler, steps) * guided
    )
  else:
    what = f"EDM ({cfg.preconditioning} preconditioning)" if cfg.formulation == "edm" else f"DDPM (T={cfg.timesteps})"
    evals = (edm_lib.evaluations(cfg.sampler, steps) if cfg.sampler in edm_lib.SAMPLERS else steps) * guided
  return (
    f"{what} {backbones.describe(cfg)}; default sampler {cfg.sampler} with "
    f"{evals} network evaluations per batch of samples."
  )
