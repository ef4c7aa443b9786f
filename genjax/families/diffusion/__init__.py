"""Denoising diffusion probabilistic models (Ho et al. 2020) with DDIM, DPM-Solver++ sampling
and classifier-free guidance (Ho and Salimans 2021).

  schedules.py   linear and cosine betas; q(x_t | x_0) and q(x_{t-1} | x_t, x_0)
  objectives.py  eps / x0 / v prediction; the simple loss; the variational bound's terms
  samplers.py    ddpm, ddim, dpmpp_2m by name, each one `lax.scan`
  likelihood.py  the full bound and its one-term estimate, in nats and bits/dim

`build(exp, info)` returns the `Family` the shared loop drives. The network is DDPM's U-Net
(genjax.nn.unet); sampling and evaluation use the EMA weights when the state has them.

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

import jax
import jax.numpy as jnp
import numpy as np

from genjax.config import Experiment
from genjax.data.datasets import first_examples
from genjax.data.info import DataInfo
from genjax.families.base import Family
from genjax.families.diffusion import likelihood, objectives, samplers, schedules
from genjax.nn.unet import UNet
from genjax.train import optim as optim_lib
from genjax.train.parallel import axis_name_for, example_keys, mean_over_data
from genjax.train.state import TrainState, apply_gradients


@dataclasses.dataclass(frozen=True)
class Config:
  """The U-Net, the diffusion and the default sampler. Defaults: DDPM's CIFAR-10 model."""

  # U-Net (Ho et al. 2020, appendix B).
  ch: int = 128
  ch_mult: Tuple[int, ...] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Tuple[int, ...] = (16,)  # feature-map sizes (height) that get self-attention
  dropout: float = 0.1
  num_heads: int = 1
  # The diffusion.
  schedule: Literal["linear", "cosine"] = "linear"
  timesteps: int = 1000
  beta_start: float = 1e-4  # linear schedule, for T = 1000 (scaled by 1000 / T otherwise)
  beta_end: float = 0.02
  prediction: Literal["eps", "x0", "v"] = "eps"
  loss: Literal["simple", "vlb"] = "simple"  # L_simple (MSE on the prediction) or the bound's L_t
  variance: Literal["fixedlarge", "fixedsmall"] = "fixedlarge"  # sigma_t^2 = beta_t or beta_tilde_t
  clip_denoised: bool = True  # clip x0_hat to [-1, 1] when sampling and evaluating the bound
  # Classifier-free guidance.
  class_conditional: bool = False
  label_dropout: float = 0.1
  guidance_scale: float = 1.0
  # Family.sample's defaults (python -m genjax.sample can override each).
  sampler: Literal["ddpm", "ddim", "dpmpp_2m"] = "ddpm"
  sample_steps: Optional[int] = None  # None: all T for ddpm, 50 for ddim, 20 for dpmpp_2m
  eta: float = 0.0  # DDIM's eta
  # Family.evaluate computes the whole bound (T network evaluations per image) on the first
  # eval_max_examples images of the split; None: the whole split.
  eval_max_examples: Optional[int] = None


# Steps of each sampler when neither the call nor the config (for its own sampler) says.
DEFAULT_STEPS = {"ddim": 50, "dpmpp_2m": 20}  # ddpm: all T


def _check(cfg: Config, info: DataInfo):
  if info.kind != "image":
    raise ValueError(f"The diffusion family models images; dataset {info.name!r} is {info.kind}.")
  H, W, _ = info.shape
  levels = len(cfg.ch_mult)
  if H % 2 ** (levels - 1) or W % 2 ** (levels - 1):
    raise ValueError(f"model.ch_mult={cfg.ch_mult} halves {H}x{W} images {levels - 1} times, which does not divide "
                     f"them; use fewer levels (e.g. --config.model.ch_mult=1,2,2 for 28x28).")
  if cfg.ch % 32:
    raise ValueError(f"model.ch = {cfg.ch} must be a multiple of 32 (GroupNorm uses 32 groups).")
  if cfg.class_conditional and not info.num_classes:
    raise ValueError(f"model.class_conditional needs labelled data; {info.name!r} has no classes.")
  if cfg.guidance_scale != 1.0 and not cfg.class_conditional:
    raise ValueError("model.guidance_scale != 1 needs model.class_conditional=True.")
  if not 0 <= cfg.label_dropout < 1:
    raise ValueError(f"model.label_dropout = {cfg.label_dropout} must lie in [0, 1).")
  samplers.get(cfg.sampler)
  if cfg.sample_steps is not None:
    samplers.timesteps(cfg.timesteps, cfg.sample_steps)


def build(exp: Experiment, info: DataInfo) -> Family:
  cfg: Config = exp.model
  _check(cfg, info)
  T = cfg.timesteps
  sched = schedules.make_schedule(cfg.schedule, T, cfg.beta_start, cfg.beta_end)
  num_classes = info.num_classes if cfg.class_conditional else None
  null_label = num_classes
  compute_dtype = jnp.dtype(exp.train.compute_dtype)
  model = UNet(ch=cfg.ch, ch_mult=cfg.ch_mult, num_res_blocks=cfg.num_res_blocks,
               attn_resolutions=cfg.attn_resolutions, dropout=cfg.dropout, num_heads=cfg.num_heads,
               out_ch=info.shape[-1], num_classes=num_classes, dtype=compute_dtype)
  tx = optim_lib.make_optimizer(exp.optim, exp.train.steps)
  axis_name = axis_name_for(exp.parallel.mode)
  num_dims = math.prod(info.shape)

  def apply(variables, xt, t_B, labels_B, train=False, rng=None):
    rngs = {"dropout": rng} if train else None
    return model.apply(variables, xt, t_B, labels_B if num_classes else None, train=train, rngs=rngs)

  def model_fn_for(variables, labels_B, guidance_scale=1.0):
    """(x_t, t_B) -> (x0_hat, eps_hat), with classifier-free guidance when guidance_scale != 1."""
    def model_fn(xt, t_B):
      if num_classes and guidance_scale != 1.0:
        n = xt.shape[0]
        both = apply(variables, jnp.concatenate([xt, xt]), jnp.concatenate([t_B, t_B]),
                     jnp.concatenate([labels_B, jnp.full_like(labels_B, null_label)]))
        out = both[n:] + guidance_scale * (both[:n] - both[n:])
      else:
        out = apply(variables, xt, t_B, labels_B)
      return objectives.to_x0_eps(sched, out.astype(jnp.float32), xt, t_B, cfg.prediction)
    return model_fn

  def init(rng, example_batch):
    x = jnp.zeros((1, *info.shape), jnp.float32)
    labels = jnp.zeros((1,), jnp.int32)
    params = jax.jit(lambda r: model.init(r, x, jnp.zeros((1,), jnp.int32), labels if num_classes else None))(rng)["params"]
    return TrainState.create(params, tx, ema=exp.optim.ema_decay is not None)

  def noisy_inputs(batch, rng):
    """Per-example t, noise and (dropped) labels from example keys: the same under jit and pmap."""
    x0 = batch["image"].astype(jnp.float32)
    keys = example_keys(rng, x0.shape[0], axis_name)
    t_B = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 0), (), 0, T))(keys)
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), x0.shape[1:]))(keys)
    labels = None
    if num_classes:
      drop = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 2), cfg.label_dropout))(keys)
      labels = jnp.where(drop, null_label, batch["label"].astype(jnp.int32))
    return x0, t_B, noise, labels

  def loss_fn(params, extra, batch, rng):
    x0, t_B, noise, labels = noisy_inputs(batch, rng)
    xt = schedules.q_sample(sched, x0, t_B, noise)
    # Dropout masks come from one key per device (they are not per-example).
    dropout_rng = rng if axis_name is None else jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    out = apply({"params": params, **extra}, xt, t_B, labels, train=True,
                rng=jax.random.fold_in(dropout_rng, 3)).astype(jnp.float32)
    mse_B = jnp.mean((out - objectives.target(sched, x0, noise, t_B, cfg.prediction)) ** 2, axis=(1, 2, 3))
    if cfg.loss == "simple":
      loss = jnp.mean(mse_B)
    else:  # L_t in bits/dim; uniform t makes it an unbiased estimate of the bound / T.
      x0_hat, _ = objectives.to_x0_eps(sched, out, xt, t_B, cfg.prediction)
      loss = jnp.mean(likelihood.nats_to_bits_per_dim(
          objectives.vlb_term(sched, x0, xt, t_B, x0_hat, cfg.variance), num_dims))
    return loss, {"loss": loss, "mse": jnp.mean(mse_B)}

  def train_step(state, batch, rng):
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state.extra, batch, rng)
    grads, metrics = mean_over_data((grads, metrics), axis_name)
    state = apply_gradients(state, grads, tx, ema_decay=exp.optim.ema_decay, step=state.step + 1)
    return state, metrics

  def eval_step(state, batch, rng):
    """MSE of the prediction and the one-term estimate of the bound (bits/dim), with EMA weights."""
    variables = state.variables(ema=True)
    x0, t_B, noise, labels = noisy_inputs(batch, rng)
    mask_B = batch.get("mask", jnp.ones((x0.shape[0],), jnp.float32))
    xt = schedules.q_sample(sched, x0, t_B, noise)
    out = apply(variables, xt, t_B, labels).astype(jnp.float32)
    mse_B = jnp.mean((out - objectives.target(sched, x0, noise, t_B, cfg.prediction)) ** 2, axis=(1, 2, 3))
    null = None if labels is None else jnp.full_like(labels, null_label)
    bound_B = likelihood.bound_estimate(model_fn_for(variables, null), sched, x0, t_B, noise,
                                        variance=cfg.variance, clip_denoised=cfg.clip_denoised)
    bpd_B = likelihood.nats_to_bits_per_dim(bound_B, num_dims)
    weighted = lambda v: jnp.sum(v * mask_B)
    sums = mean_over_data({"mse": weighted(mse_B), "bpd_estimate": weighted(bpd_B), "n": jnp.sum(mask_B)}, axis_name)
    n = jnp.maximum(sums.pop("n"), 1.0)
    return {k: v / n for k, v in sums.items()}

  @jax.jit
  def _full_bound(variables, x0, rng):
    labels = jnp.full((x0.shape[0],), null_label if num_classes else 0, jnp.int32)
    return likelihood.full_bound(model_fn_for(variables, labels), sched, x0, rng,
                                 variance=cfg.variance, clip_denoised=cfg.clip_denoised)

  def evaluate(state, batches, rng):
    """The whole bound on the split (or its first model.eval_max_examples images): nats per
    image and bits/dim, split into the prior L_T, the diffusion terms and the decoder L_0."""
    variables = state.variables(ema=True)
    totals = {"prior": 0.0, "diffusion": 0.0, "decoder": 0.0, "total": 0.0}
    count = 0
    for i, batch in enumerate(first_examples(batches, cfg.eval_max_examples)):
      mask = np.asarray(batch.get("mask", np.ones(len(batch["image"]), np.float32)), np.float64)
      if not mask.any():
        break
      terms = jax.device_get(_full_bound(variables, jnp.asarray(batch["image"], jnp.float32), jax.random.fold_in(rng, i)))
      for k in totals:
        totals[k] += float(np.sum(np.asarray(terms[k], np.float64) * mask))
      count += int(mask.sum())
    if count == 0:
      raise ValueError("diffusion evaluate: the evaluation batches held no examples.")
    bits = num_dims * math.log(2.0) * count
    out = {"nll_nats": totals["total"] / count, "bits_per_dim": totals["total"] / bits,
           "prior_bpd": totals["prior"] / bits, "diffusion_bpd": totals["diffusion"] / bits,
           "decoder_bpd": totals["decoder"] / bits, "num_examples": count}
    return out

  @functools.partial(jax.jit, static_argnames=("n", "sampler", "num_steps", "eta", "guidance_scale"))
  def _sample(variables, rng, labels, *, n, sampler, num_steps, eta, guidance_scale):
    model_fn = model_fn_for(variables, labels, guidance_scale)
    x = samplers.get(sampler)(model_fn, sched, rng, (n, *info.shape), num_steps=num_steps, eta=eta,
                              clip_denoised=cfg.clip_denoised, variance=cfg.variance)
    return jnp.clip(x, -1.0, 1.0)

  def sample(variables, rng, n, *, sampler=None, num_steps=None, eta=None, guidance_scale=None,
             labels=None, label=None):
    """n images f32[n, H, W, C] in [-1, 1], one compiled call (it may also be traced inside the
    caller's jit). Defaults come from the config. Class-conditional models draw class `label`
    (an int, for every image) or `labels` (int[n]); by default 0, 1, ..., num_classes - 1, 0, 1, ..."""
    sampler = sampler or cfg.sampler
    samplers.get(sampler)
    if num_steps is None:  # the config's steps go with the config's sampler
      num_steps = (cfg.sample_steps if sampler == cfg.sampler else None) or min(DEFAULT_STEPS.get(sampler, T), T)
    num_steps = int(num_steps)
    samplers.timesteps(T, num_steps)
    guidance_scale = float(cfg.guidance_scale if guidance_scale is None else guidance_scale)
    if not num_classes and (guidance_scale != 1.0 or labels is not None or label is not None):
      raise ValueError("labels and guidance_scale != 1 need a class-conditional model (model.class_conditional=True).")
    if num_classes:
      if label is not None:
        labels = np.full((n,), label)
      if labels is None:
        labels = np.arange(n) % num_classes
      if not isinstance(labels, jax.core.Tracer):
        labels = np.broadcast_to(np.asarray(labels), (n,))
        if labels.min() < 0 or labels.max() >= num_classes:
          raise ValueError(f"labels must lie in [0, {num_classes}), got {sorted(set(labels.tolist()))}.")
    else:
      labels = np.zeros((n,), np.int32)
    return _sample(variables, rng, jnp.asarray(labels, jnp.int32), n=int(n), sampler=sampler, num_steps=num_steps,
                   eta=float(cfg.eta if eta is None else eta), guidance_scale=guidance_scale)

  evals = lambda s, steps: steps * (2 if s != 1.0 else 1)
  notes = (f"DDPM U-Net ch={cfg.ch} mult={cfg.ch_mult}; default sampler {cfg.sampler} with "
           f"{evals(cfg.guidance_scale, cfg.sample_steps or T)} U-Net evaluations per batch of samples.")
  return Family(init=init, train_step=train_step, eval_step=eval_step, sample=sample, output="image",
                evaluate=evaluate, notes=notes)
