"""Variational autoencoders: the VAE (Kingma & Welling 2014), beta-VAE (Higgins et al. 2017) and
the importance-weighted autoencoder (IWAE, Burda, Grosse & Salakhutdinov 2015), as pure functions
over one Flax module.

Architectures (`Config.architecture`):
  "mlp"   the networks of Burda et al. 2015: x -> hidden (tanh) -> Gaussian q(z1|x), and for each
          further stochastic layer z_i -> (width of z_{i-1}, same depth) -> Gaussian q(z_{i+1}|z_i).
          One stochastic layer: 784-200-200-50. Two: latents=(100, 50), i.e. 784-200-200-100
          (stochastic), 100-100-50 (stochastic), with the mirror-image generative network.
          `hidden=()` gives a linear encoder and decoder (probabilistic PCA / factor analysis with
          the Gaussian likelihood, whose exact log p(x) the tests use).
  "conv"  a convolutional encoder (stride-2 4x4 convolutions, then a dense layer) and the mirror
          decoder (stride-2 4x4 transposed convolutions), for 28x28, 32x32 (or any size divisible
          by 2**len(conv_channels)) grey or colour images.

Likelihoods p(x|z) (`Config.likelihood`): "bernoulli" for binary data (batches hold -1/1; the
model sees (x+1)/2 in {0,1}); "logistic", the discretized logistic of PixelCNN++ over
`num_bins` levels in [-1, 1] (a probability mass, so NLLs are in nats per image); "gaussian", a
diagonal Gaussian density (continuous, so its NLL is a density, not comparable with the
discrete ones). "auto" picks bernoulli for binary data and logistic otherwise.

Objectives: the ELBO with a KL weight `beta` (analytic KL for one stochastic layer, Monte Carlo for
several), or the IWAE bound log (1/k) sum_k w_k with `train_samples` = k. Evaluation estimates
log p(x) by importance sampling with `eval_samples` (5000, as in the IWAE paper) posterior samples,
drawn in chunks of `eval_chunk` and combined with a running logsumexp so it fits in memory.

Shapes: B batch, K importance samples, Z latent size, H W C image, P likelihood parameters per
pixel (1 for Bernoulli logits or a mean with a learned per-pixel scale, 2 for mean and log-scale).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from typing import Any, Dict, List, Literal, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors
from genjax.config import ConfigError, Experiment
from genjax.core import flops, parallel
from genjax.core import step as step_lib
from genjax.data.info import DataInfo
from genjax.families import base, vqvae
from genjax.nn import conv
from genjax.nn.losses import MIN_LOG_SCALE, bernoulli_nll, discretized_logistic_log_prob, discretized_logistic_mean

LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class Config:
  """VAE / IWAE hyper-parameters; the defaults are the 1-layer model of Burda et al. 2015."""

  architecture: Literal["mlp", "conv"] = "mlp"
  hidden: Tuple[int, ...] = (200, 200)  # deterministic layers between x and z1 (conv: dense after the convs)
  latents: Tuple[int, ...] = (50,)  # stochastic layer sizes, bottom (nearest x) to top
  conv_channels: Tuple[int, ...] = (32, 64)  # "conv": channels of the stride-2 convolutions
  activation: Literal["tanh", "relu", "elu", "gelu", "silu"] = "tanh"
  likelihood: Literal["auto", "bernoulli", "logistic", "gaussian"] = "auto"
  # "output": the decoder predicts a per-pixel log-scale; "learned": one free parameter per pixel.
  scale: Literal["output", "learned"] = "output"
  num_bins: int = 256  # levels of the discretized logistic (256 for 8-bit images)
  objective: Literal["elbo", "iwae"] = "elbo"
  beta: float = 1.0  # KL weight of the ELBO (beta-VAE); 1 is the plain VAE
  train_samples: int = 1  # k: samples per example in the training objective
  eval_samples: int = 5000  # k of the importance-weighted NLL estimate in `evaluate`
  eval_chunk: int = 100  # samples drawn at once in `evaluate` (memory ~ chunk * batch * pixels)
  eval_step_samples: int = 50  # k of the cheap IWAE bound logged by the periodic eval_step


_ACTIVATIONS = {"tanh": jnp.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu, "silu": nn.silu}


# ----------------------------------------------------------------------------------------------
# Distributions (float32, summed over event dimensions)
# ----------------------------------------------------------------------------------------------


def normal_log_prob(z, mean, log_std):
  """log N(z; mean, exp(log_std)^2), summed over the last axis."""
  return jnp.sum(-0.5 * jnp.square((z - mean) * jnp.exp(-log_std)) - log_std - 0.5 * LOG_2PI, -1)


def gaussian_kl_to_standard(mean, log_std):
  """KL(N(mean, exp(log_std)^2) || N(0, I)), summed over the last axis."""
  return jnp.sum(0.5 * (jnp.square(mean) + jnp.exp(2.0 * log_std) - 1.0) - log_std, -1)


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


class MLP(nn.Module):
  """Dense layers with an activation after each: [..., F_in] -> [..., widths[-1]] (identity if
  `widths` is empty)."""

  widths: Sequence[int]
  activation: str
  dtype: Any

  @nn.compact
  def __call__(self, h):
    for width in self.widths:
      h = _ACTIVATIONS[self.activation](nn.Dense(width, dtype=self.dtype)(h))
    return h


class ConvEncoder(nn.Module):
  """x [B,H,W,C] -> features [B,F]: stride-2 4x4 convolutions, flatten, dense `hidden`."""

  channels: Sequence[int]
  hidden: Sequence[int]
  activation: str
  dtype: Any

  @nn.compact
  def __call__(self, x):
    act = _ACTIVATIONS[self.activation]
    for ch in self.channels:
      x = act(conv.Conv(ch, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype)(x))
    return MLP(self.hidden, self.activation, self.dtype)(x.reshape(x.shape[0], -1))


class ConvDecoder(nn.Module):
  """z [N,Z] -> likelihood parameters [N,H,W,C*P]: dense `hidden` reversed, a dense layer to the
  smallest feature map, then stride-2 4x4 transposed convolutions back to H x W."""

  image_shape: Tuple[int, int, int]
  channels: Sequence[int]
  hidden: Sequence[int]
  out_features: int
  activation: str
  dtype: Any

  @nn.compact
  def __call__(self, z):
    act = _ACTIVATIONS[self.activation]
    h, w, _ = self.image_shape
    factor = 2 ** len(self.channels)
    x = MLP(tuple(reversed(self.hidden)), self.activation, self.dtype)(z)
    x = act(nn.Dense((h // factor) * (w // factor) * self.channels[-1], dtype=self.dtype)(x))
    x = x.reshape(x.shape[0], h // factor, w // factor, self.channels[-1])
    for ch in reversed(self.channels[:-1]):
      x = act(conv.ConvTranspose(ch, (4, 4), (2, 2), "SAME", dtype=self.dtype)(x))
    return conv.ConvTranspose(self.out_features, (4, 4), (2, 2), "SAME", dtype=self.dtype)(x)


class VAE(nn.Module):
  """Encoder q(z_1..z_L|x), prior p(z_L) p(z_{L-1}|z_L)..., decoder p(x|z_1).

  `__call__(x, eps)` returns per-sample log terms for reparameterised posterior samples
  z = mean + std * eps, eps a list over stochastic layers of [B,K,Z_i] standard normals."""

  config: Config
  image_shape: Tuple[int, int, int]
  likelihood: str  # resolved: bernoulli, logistic or gaussian
  dtype: Any = jnp.float32

  def setup(self):
    cfg = self.config
    num_layers = len(cfg.latents)
    # IWAE paper: the deterministic layers between z_{i-1} and z_i have z_{i-1}'s width.
    upper_widths = [(cfg.latents[i - 1],) * len(cfg.hidden) for i in range(1, num_layers)]
    if cfg.architecture == "conv":
      self.x_encoder = ConvEncoder(cfg.conv_channels, cfg.hidden, cfg.activation, self.dtype)
    else:
      self.x_encoder = MLP(cfg.hidden, cfg.activation, self.dtype)
    self.q_nets = [MLP(w, cfg.activation, self.dtype) for w in upper_widths]
    self.q_heads = [nn.Dense(2 * z, dtype=self.dtype) for z in cfg.latents]
    self.p_nets = [MLP(w, cfg.activation, self.dtype) for w in upper_widths]  # p(z_{i-1} | z_i)
    self.p_heads = [nn.Dense(2 * cfg.latents[i - 1], dtype=self.dtype) for i in range(1, num_layers)]
    out_features = self.image_shape[-1] * self.params_per_pixel
    if cfg.architecture == "conv":
      self.decoder = ConvDecoder(
        self.image_shape, cfg.conv_channels, cfg.hidden, out_features, cfg.activation, self.dtype
      )
    else:
      self.decoder_mlp = MLP(tuple(reversed(cfg.hidden)), cfg.activation, self.dtype)
      self.decoder_out = nn.Dense(int(np.prod(self.image_shape)) * self.params_per_pixel, dtype=self.dtype)
    if self.likelihood != "bernoulli" and cfg.scale == "learned":
      self.pixel_log_scale = self.param("pixel_log_scale", nn.initializers.zeros, self.image_shape)

  @property
  def params_per_pixel(self) -> int:
    return 2 if (self.likelihood != "bernoulli" and self.config.scale == "output") else 1

  def model_input(self, x):
    """Bernoulli models see {0,1}, the others [-1,1] (the batch's own range)."""
    return (x + 1.0) / 2.0 if self.likelihood == "bernoulli" else x

  # -- encoder -----------------------------------------------------------------------------------

  def q_first(self, x):
    """q(z_1|x): x [B,H,W,C] -> (mean, log_std) each [B,Z_1]."""
    h = self.model_input(x).astype(self.dtype)
    h = self.x_encoder(h if self.config.architecture == "conv" else h.reshape(h.shape[0], -1))
    return _split_gaussian(self.q_heads[0](h))

  def q_upper(self, i, z_below):
    """q(z_i|z_{i-1}) for i >= 1: [...,Z_{i-1}] -> (mean, log_std) each [...,Z_i]."""
    return _split_gaussian(self.q_heads[i](self.q_nets[i - 1](z_below.astype(self.dtype))))

  def p_lower(self, i, z_above):
    """p(z_{i-1}|z_i) for i >= 1: [...,Z_i] -> (mean, log_std) each [...,Z_{i-1}]."""
    return _split_gaussian(self.p_heads[i - 1](self.p_nets[i - 1](z_above.astype(self.dtype))))

  def encode(self, x):
    """The posterior means passed up the layers: x [B,H,W,C] -> z_L [B,Z_L]."""
    z, _ = self.q_first(x)
    for i in range(1, len(self.config.latents)):
      z, _ = self.q_upper(i, z)
    return z

  # -- decoder -----------------------------------------------------------------------------------

  def decode(self, z_NxZ):
    """p(x|z_1) parameters: z_1 [N,Z_1] -> f32[N,H,W,C,P]."""
    z = z_NxZ.astype(self.dtype)
    if self.config.architecture == "conv":
      out = self.decoder(z)
    else:
      out = self.decoder_out(self.decoder_mlp(z))
    return out.astype(jnp.float32).reshape(z.shape[0], *self.image_shape, self.params_per_pixel)

  def log_likelihood(self, x, params):
    """log p(x|z) in nats per image: x [..., H,W,C] and decoder parameters [..., H,W,C,P], their
    leading dimensions broadcast (an image [B,1,...] against K samples [B,K,...]) -> f32[...].

    The pixels are flattened to one axis first: a sum over (H, W, C) with C = 1 innermost is a
    reduction XLA's CPU backend does not vectorise (35x slower for the 784-pixel Bernoulli)."""
    d = int(np.prod(self.image_shape))
    x = x.reshape(*x.shape[:-3], d)
    params = params.reshape(*params.shape[:-4], d, params.shape[-1])
    if self.likelihood == "bernoulli":
      return -jnp.sum(bernoulli_nll(params[..., 0], self.model_input(x)), axis=-1)
    mean, log_scale = self._mean_and_log_scale(params, flat=True)
    if self.likelihood == "logistic":
      return discretized_logistic_log_prob(x, mean, log_scale, self.config.num_bins, event_dims=1)
    return jnp.sum(-0.5 * jnp.square((x - mean) * jnp.exp(-log_scale)) - log_scale - 0.5 * LOG_2PI, axis=-1)

  def _mean_and_log_scale(self, params, flat: bool = False):
    """(mean, log_scale) from decoder parameters [..., H,W,C, P] (or [..., H*W*C, P] when flat)."""
    mean = params[..., 0]
    if self.config.scale == "learned":
      pixels = self.pixel_log_scale.reshape(-1) if flat else self.pixel_log_scale
      log_scale = jnp.broadcast_to(pixels, mean.shape)
    else:
      log_scale = params[..., 1]
    if self.likelihood == "logistic":
      log_scale = jnp.maximum(log_scale, MIN_LOG_SCALE)
    return mean, log_scale

  def mean_image(self, params_NxHxWxCxP):
    """The decoder's mean image E[x|z] in [-1, 1]: Bernoulli probabilities rescaled to [-1, 1];
    for the discretized logistic the mean of the discrete distribution (its location can lie
    outside [-1, 1], where the edge bins take the mass); the Gaussian mean clipped."""
    if self.likelihood == "bernoulli":
      return jax.nn.sigmoid(params_NxHxWxCxP[..., 0]) * 2.0 - 1.0
    mean, log_scale = self._mean_and_log_scale(params_NxHxWxCxP)
    if self.likelihood == "logistic":
      return discretized_logistic_mean(mean, log_scale, self.config.num_bins)
    return jnp.clip(mean, -1.0, 1.0)

  # -- the whole model ---------------------------------------------------------------------------

  def __call__(self, x_BxHxWxC, eps: List[jax.Array]) -> Dict[str, jax.Array]:
    """Log terms of K posterior samples per example. eps[i]: [B,K,Z_i].

    Returns log_px_z, log_pz, log_qz: f32[B,K] (log p(x|z_1), log p(z_1..z_L), log q(z_1..z_L|x))
    and kl: f32[B], the analytic KL(q(z_1|x) || N(0,I)) when there is one stochastic layer
    (else the Monte Carlo mean of log q - log p)."""
    b, k = eps[0].shape[:2]
    mean, log_std = self.q_first(x_BxHxWxC)
    mean, log_std = mean.astype(jnp.float32)[:, None], log_std.astype(jnp.float32)[:, None]
    zs = [mean + jnp.exp(log_std) * eps[0]]
    log_qz = normal_log_prob(zs[0], mean, log_std)
    for i in range(1, len(eps)):
      m, s = (t.astype(jnp.float32) for t in self.q_upper(i, zs[-1]))
      zs.append(m + jnp.exp(s) * eps[i])
      log_qz += normal_log_prob(zs[-1], m, s)
    log_pz = normal_log_prob(zs[-1], 0.0, 0.0)
    for i in range(len(eps) - 1, 0, -1):
      m, s = (t.astype(jnp.float32) for t in self.p_lower(i, zs[i]))
      log_pz += normal_log_prob(zs[i - 1], m, s)
    params = self.decode(zs[0].reshape(b * k, -1))
    log_px_z = self.log_likelihood(x_BxHxWxC[:, None], params.reshape(b, k, *params.shape[1:]))
    if len(eps) == 1:
      kl = gaussian_kl_to_standard(mean[:, 0], log_std[:, 0])
    else:
      kl = jnp.mean(log_qz - log_pz, axis=1)
    return {"log_px_z": log_px_z, "log_pz": log_pz, "log_qz": log_qz, "kl": kl}

  def generate(self, eps: List[jax.Array], mean_only: bool = False):
    """Ancestral sampling: eps[i] [N,Z_i] standard normals -> decoder parameters [N,H,W,C,P].
    `mean_only` follows the conditional means below the top layer (for latent traversals)."""
    z = eps[-1]
    for i in range(len(eps) - 1, 0, -1):
      m, s = (t.astype(jnp.float32) for t in self.p_lower(i, z))
      z = m if mean_only else m + jnp.exp(s) * eps[i - 1]
    return self.decode(z)


def _split_gaussian(h):
  mean, log_std = jnp.split(h, 2, axis=-1)
  return mean, log_std


# ----------------------------------------------------------------------------------------------
# Bounds from the log terms
# ----------------------------------------------------------------------------------------------


def elbo_terms(terms: Dict[str, jax.Array]) -> Dict[str, jax.Array]:
  """Per-example reconstruction E_q log p(x|z), KL and ELBO = recon - KL: each f32[B]."""
  recon = jnp.mean(terms["log_px_z"], axis=1)
  return {"recon": recon, "kl": terms["kl"], "elbo": recon - terms["kl"]}


def log_weights(terms: Dict[str, jax.Array]) -> jax.Array:
  """log w = log p(x, z) - log q(z|x): f32[B,K]."""
  return terms["log_px_z"] + terms["log_pz"] - terms["log_qz"]


def iwae_bound(terms: Dict[str, jax.Array]) -> jax.Array:
  """log (1/K) sum_k w_k: f32[B]; K=1 gives the Monte Carlo ELBO, K -> inf gives log p(x)."""
  lw = log_weights(terms)
  return jax.nn.logsumexp(lw, axis=1) - jnp.log(lw.shape[1])


# ----------------------------------------------------------------------------------------------
# The family
# ----------------------------------------------------------------------------------------------


def check_config(cfg: Config, info: DataInfo) -> None:
  """Raises ConfigError, before anything compiles, for settings that cannot work together."""
  if info.kind != "image":
    raise ConfigError(
      f"The vae family models images, but dataset {info.name!r} is {info.kind}: "
      f"use --config.data.name=digits|mnist|fashion_mnist|binarized_mnist|cifar10."
    )
  if not cfg.latents or min(cfg.latents) <= 0:
    raise ConfigError(f"config.model.latents = {cfg.latents} must list positive sizes, e.g. (50,) or (100, 50).")
  if any(w <= 0 for w in cfg.hidden):
    raise ConfigError(f"config.model.hidden = {cfg.hidden} must hold positive widths.")
  if base.resolve_likelihood(cfg, info) == "bernoulli" and not info.binary:
    raise ConfigError(
      f"config.model.likelihood='bernoulli' needs binary data, but {info.name!r} is not binarized: "
      f"set --config.data.binarize=dynamic (or threshold), or use likelihood=logistic."
    )
  if cfg.architecture == "conv":
    if not cfg.conv_channels:
      raise ConfigError("config.model.conv_channels must not be empty for architecture='conv'.")
    factor = 2 ** len(cfg.conv_channels)
    h, w, _ = info.shape
    if h % factor or w % factor:
      raise ConfigError(
        f"architecture='conv' halves the image {len(cfg.conv_channels)} times, so H and W must be "
        f"divisible by {factor}; {info.name!r} is {h}x{w}. Use fewer config.model.conv_channels."
      )
  if cfg.num_bins < 2:
    raise ConfigError(f"config.model.num_bins = {cfg.num_bins} must be >= 2 (256 for 8-bit images).")
  for name in ("train_samples", "eval_samples", "eval_chunk", "eval_step_samples"):
    if getattr(cfg, name) <= 0:
      raise ConfigError(f"config.model.{name} = {getattr(cfg, name)} must be a positive integer.")
  if cfg.eval_samples % min(cfg.eval_chunk, cfg.eval_samples):
    raise ConfigError(
      f"config.model.eval_samples = {cfg.eval_samples} must be a multiple of eval_chunk = "
      f"{cfg.eval_chunk} (e.g. --config.model.eval_chunk=100)."
    )
  if cfg.beta < 0:
    raise ConfigError(f"config.model.beta = {cfg.beta} must be >= 0.")
  if cfg.objective == "iwae" and cfg.beta != 1.0:
    raise ConfigError(
      "config.model.beta weights the ELBO's KL; the IWAE bound has no KL term. "
      "Use objective='elbo' with beta, or beta=1 with objective='iwae'."
    )


def make_model(cfg: Config, info: DataInfo, dtype=jnp.float32) -> VAE:
  """The VAE module for model config `cfg` on data `info` (checked first)."""
  check_config(cfg, info)
  return VAE(cfg, tuple(info.shape), base.resolve_likelihood(cfg, info), dtype=jnp.dtype(dtype))


def draw_eps(model: VAE, keys_B: jax.Array, k: int) -> List[jax.Array]:
  """Standard normal noise for K posterior samples per example, one key per example: a list over
  stochastic layers of f32[B,K,Z_i]."""

  def one(key):
    layer_keys = jax.random.split(key, len(model.config.latents))
    return [jax.random.normal(layer_keys[i], (k, z)) for i, z in enumerate(model.config.latents)]

  return parallel.per_example(one, keys_B)


# ----------------------------------------------------------------------------------------------
# Pure functions: losses, evaluation, sampling (call them under your own jax.jit)
# ----------------------------------------------------------------------------------------------


def per_example_terms(params, batch, rng, model: VAE, k: int, objective: str):
  """(loss_B, {recon, kl, elbo[, iwae]: f32[B]}) for K = k posterior samples per example; the
  loss is -ELBO (with the KL weighted by beta) or, for objective "iwae", minus the IWAE bound."""
  x = batch["image"]
  keys = parallel.example_keys(rng, x.shape[0])
  terms = model.apply({"params": params}, x, draw_eps(model, keys, k))
  per_example = elbo_terms(terms)
  if objective == "iwae":
    per_example["iwae"] = iwae_bound(terms)
    loss_B = -per_example["iwae"]
  else:
    loss_B = -(per_example["recon"] - model.config.beta * per_example["kl"])
  return loss_B, per_example


def loss(params, batch, rng, model: VAE):
  """The training objective of model.config (ELBO or IWAE bound with train_samples samples),
  averaged over the batch: (loss, {loss, recon, kl, elbo[, iwae]})."""
  cfg = model.config
  loss_B, per_example = per_example_terms(params, batch, rng, model, cfg.train_samples, cfg.objective)
  metrics = {name: jnp.mean(v) for name, v in per_example.items()}
  value = jnp.mean(loss_B)
  return value, {"loss": value, **metrics}


def eval_sums(variables, batch, rng, model: VAE):
  """Sums over the real examples of the IWAE bound with eval_step_samples samples (reported as
  nll_k<k>) and of the ELBO terms averaged over those samples; (sums, count)."""
  k = model.config.eval_step_samples
  loss_B, per_example = per_example_terms(variables["params"], batch, rng, model, k, "iwae")
  values = {name: v for name, v in per_example.items() if name != "iwae"}
  values[f"nll_k{k}"] = loss_B
  return step_lib.masked_sums(values, step_lib.batch_mask(batch, loss_B.shape[0]))


def chunk_logsumexp(model: VAE, variables, x_BxHxWxC, keys_B, c, chunk: int):
  """logsumexp over `chunk` importance samples of log w, drawn from fold_in(key, c): f32[B]."""
  eps = draw_eps(model, jax.vmap(lambda key: jax.random.fold_in(key, c))(keys_B), chunk)
  return jax.nn.logsumexp(log_weights(model.apply(variables, x_BxHxWxC, eps)), axis=1)


def importance_sampled_log_px(model: VAE, variables, x_BxHxWxC, keys_B, num_samples: int, chunk: int):
  """log p(x) ~= logsumexp_k log w_k - log K with K = num_samples, drawn `chunk` at a time (chunk c
  uses fold_in(key, c)) and combined with a running logsumexp inside one compiled loop: f32[B].
  A chunk is one decoder call on B * chunk latents (a [B*chunk, Z] matmul chain)."""
  chunk = min(chunk, num_samples)

  def body(running_lse, c):
    return jnp.logaddexp(running_lse, chunk_logsumexp(model, variables, x_BxHxWxC, keys_B, c, chunk)), None

  start = jnp.full((x_BxHxWxC.shape[0],), -jnp.inf, jnp.float32)
  lse, _ = jax.lax.scan(body, start, jnp.arange(num_samples // chunk))
  return lse - jnp.log(float(num_samples))


@functools.partial(jax.jit, static_argnames="model")
def evaluation_sums(params, batch, rng, model: VAE):
  """Sums over the real examples of one batch of the test ELBO terms (one sample) and of the
  importance-sampled NLL with eval_samples samples; (sums, count)."""
  cfg = model.config
  variables = {"params": params}
  x, mask = batch["image"], batch["mask"]
  keys = parallel.example_keys(jax.random.fold_in(rng, 0), x.shape[0])
  elbo_keys = parallel.example_keys(jax.random.fold_in(rng, 1), x.shape[0])
  per_example = elbo_terms(model.apply(variables, x, draw_eps(model, elbo_keys, 1)))
  log_px = importance_sampled_log_px(model, variables, x, keys, cfg.eval_samples, cfg.eval_chunk)
  sums = {name: jnp.sum(v * mask) for name, v in per_example.items()}
  sums["nll"] = -jnp.sum(log_px * mask)
  return sums, jnp.sum(mask)


def evaluation_flops(params, batch, rng, model: VAE) -> float:
  """XLA's FLOP count of one `evaluation_sums` call, its loop's body counted once per chunk."""
  cfg = model.config
  chunk = min(cfg.eval_chunk, cfg.eval_samples)
  x = batch["image"]
  keys = parallel.example_keys(rng, x.shape[0])
  one_chunk = jax.jit(lambda p, x, keys: chunk_logsumexp(model, {"params": p}, x, keys, 0, chunk))
  with_one_trip = flops.of_call(evaluation_sums, params, batch, rng, model)  # XLA counts the body once
  return with_one_trip + (cfg.eval_samples // chunk - 1) * flops.of_call(one_chunk, params, x, keys)


def evaluate(variables, batches, rng, model: VAE) -> Dict[str, float]:
  """Test ELBO, KL, reconstruction and the importance-sampled NLL (nats per image, K =
  eval_samples) over every real example of `batches` (batch i draws from fold_in(rng, i));
  bits_per_dim = nll / (H*W*C ln 2); flops: XLA's count of the whole evaluation."""
  totals: Dict[str, float] = {}
  count, total_flops, per_shape = 0.0, 0.0, {}
  for i, batch in enumerate(batches):
    batch = {"image": jnp.asarray(batch["image"]), "mask": jnp.asarray(batch["mask"], jnp.float32)}
    key = jax.random.fold_in(rng, i)
    if batch["image"].shape not in per_shape:
      per_shape[batch["image"].shape] = evaluation_flops(variables["params"], batch, key, model)
    total_flops += per_shape[batch["image"].shape]
    sums, n = jax.device_get(evaluation_sums(variables["params"], batch, key, model))
    for name, value in sums.items():
      totals[name] = totals.get(name, 0.0) + float(value)
    count += float(n)
  if not count:
    raise errors.ConfigError("evaluate() got no real examples (every mask was 0, or no batches).")
  out = {name: value / count for name, value in totals.items()}
  out["bits_per_dim"] = out["nll"] / (float(np.prod(model.image_shape)) * math.log(2.0))
  out["nll_samples"] = float(model.config.eval_samples)
  out["num_examples"] = count
  out["flops"] = total_flops
  return out


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """VAE samples are the decoder's mean images at latents drawn from the prior."""


def sample(variables, rng, n: int, model: VAE, options: SampleOptions = SampleOptions()):
  """n images f32[n,H,W,C] in [-1, 1]: ancestral samples of the latents, decoded to mean images."""
  del options
  variables = {"params": variables["params"]}
  keys = parallel.example_keys(rng, n)

  def one(key):
    layer_keys = jax.random.split(key, len(model.config.latents))
    return [jax.random.normal(layer_keys[i], (z,)) for i, z in enumerate(model.config.latents)]

  eps = parallel.per_example(one, keys)
  decoded = model.apply(variables, eps, method=VAE.generate)
  return model.apply(variables, decoded, method=VAE.mean_image)


# ----------------------------------------------------------------------------------------------
# Jitted tools over a trained model: encode, decode, reconstruct, interpolate
# ----------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="model")
def encode(params, x_BxHxWxC, model: VAE):
  """The posterior means passed up the layers: x [B,H,W,C] -> z_L [B,Z_L]."""
  return model.apply({"params": params}, x_BxHxWxC, method=VAE.encode)


@functools.partial(jax.jit, static_argnames="model")
def decode(params, z1_NxZ, model: VAE):
  """z_1 [N,Z_1] -> the decoder's mean images [N,H,W,C] in [-1, 1]."""
  variables = {"params": params}
  return model.apply(variables, model.apply(variables, z1_NxZ, method=VAE.decode), method=VAE.mean_image)


@functools.partial(jax.jit, static_argnames="model")
def reconstruct(params, x_BxHxWxC, model: VAE):
  """x -> the decoder's mean at the posterior mean of z_1: f32[B,H,W,C] in [-1, 1]."""
  variables = {"params": params}
  mean, _ = model.apply(variables, x_BxHxWxC, method=VAE.q_first)
  decoded = model.apply(variables, mean.astype(jnp.float32), method=VAE.decode)
  return model.apply(variables, decoded, method=VAE.mean_image)


@functools.partial(jax.jit, static_argnames=("model", "steps"))
def interpolate(params, x_a, x_b, model: VAE, steps: int):
  """Decodes the straight line between the posterior means of z_1 for two images: [steps,H,W,C]."""
  means, _ = model.apply({"params": params}, jnp.stack([x_a, x_b]), method=VAE.q_first)
  t = jnp.linspace(0.0, 1.0, steps)[:, None]
  return decode(params, (1.0 - t) * means[0] + t * means[1], model)


def pictures(variables, batch, rng, model: VAE, n: int = 64):
  """Reconstructions (rows of data, each followed by the row of its reconstructions, laid out
  so a square grid keeps the pairs aligned) and, for a 2-D top latent, a latent traversal
  (`rng` and `n` unused: both are fixed by the batch)."""
  del rng, n
  params = variables["params"]
  out = {
    "reconstructions": base.reconstruction_pairs(jnp.asarray(batch["image"]), lambda x: reconstruct(params, x, model))
  }
  if model.config.latents[-1] == 2:
    variables = {"params": params}
    out["latent_traversal"] = model.apply(variables, _traversal_grid(model, variables), method=VAE.mean_image)
  return out


def _traversal_grid(model: VAE, variables, n: int = 15):
  """Decoded means on an n x n grid of Gaussian quantiles of a 2-D top latent: f32[n*n,H,W,C]."""
  from scipy.stats import norm  # only for the quantiles, computed once on the host

  q = norm.ppf(np.linspace(0.05, 0.95, n)).astype(np.float32)
  grid = np.stack(np.meshgrid(q, q[::-1], indexing="xy"), -1).reshape(n * n, 2)  # rows top to bottom
  eps = [jnp.zeros((n * n, z)) for z in model.config.latents[:-1]] + [jnp.asarray(grid)]
  return model.apply(variables, eps, mean_only=True, method=VAE.generate)


# ----------------------------------------------------------------------------------------------
# The adapter the trainer uses
# ----------------------------------------------------------------------------------------------

# The VQ-VAE (genjax.families.vqvae) is the family's other model: its config picks its module.
CONFIGS = (Config, vqvae.VQVAEConfig)
SAMPLE_OPTIONS = {"Config": SampleOptions, "VQVAEConfig": vqvae.SampleOptions}


def module_for(cfg):
  """The module of the model `cfg` configures: this one for a Config, vqvae for a VQVAEConfig."""
  return vqvae if isinstance(cfg, vqvae.VQVAEConfig) else sys.modules[__name__]


def init(rng, model: VAE):
  """Fresh variables: {"params": ...}."""
  x = jnp.zeros((1, *model.image_shape), jnp.float32)
  return {"params": model.init(rng, x, [jnp.zeros((1, 1, z)) for z in model.config.latents])["params"]}


updates = base.loss_updates(loss)


def notes(exp: Experiment, model: VAE) -> str:
  cfg = model.config
  return (
    f"VAE ({cfg.architecture}, latents {cfg.latents}, {model.likelihood} likelihood, "
    f"objective {cfg.objective}{f' k={cfg.train_samples}' if cfg.objective == 'iwae' else ''})"
  )
