"""The VQ-VAE of van den Oord, Vinyals and Kavukcuoglu 2017 ("Neural Discrete Representation
Learning", arXiv:1711.00937), in the VAE family: `Experiment.model = VQVAEConfig(...)` with
`family="vae"` (genjax.families.vae picks this module for it).

Model. An encoder maps x [B,H,W,C] to z_e [B,h,w,D] (h = H/4: two 4x4 stride-2 convolutions, then
residual 3x3 blocks, section 4.1); each of the h*w vectors is replaced by its nearest code of a
codebook of K vectors (genjax.nn.quantize), z_q; the decoder maps z_q back to the parameters of
p(x|z_q) (residual blocks, two 4x4 stride-2 transposed convolutions). Gradients pass the
quantisation straight through (eq. 3).

Objective (eq. 3, with the codebook learnt by EMA, Appendix A.1):

    loss = -log p(x | z_q) / (H W C)  +  beta * ||z_e - sg[z_q]||^2 / D

per image, averaged over the batch (the reconstruction in nats per dimension, the commitment term
per latent dimension, both means as Sonnet's vqvae_example computes them). The codebook is not a
parameter: each step moves it by an exponential moving average of the encoder outputs assigned
to each code (decay 0.99, the paper's appendix), and codes whose averaged use falls below
`restart_threshold` restart at random encoder outputs of the batch. Logged with the loss: the
reconstruction (nats per image), the commitment term, the batch's codebook perplexity and the
fraction of codes used.

Likelihood: Bernoulli for binarized data, else the discretized logistic over `num_bins` levels
(PixelCNN++'s, genjax.nn.losses), so the reconstruction is a probability and, with the uniform
prior over codes that the paper trains against, `evaluate` gives the bound

    -log p(x) <= -log p(x | z_q(x)) + h w log K      (nats per image; bits/dim beside it)

which a learnt prior over the codes then tightens (the two-stage bound).

Shapes: B batch, H W C image, h w latent grid, D code width, K codes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Dict, Literal, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.config import ConfigError, Experiment
from genjax.core import step as step_lib
from genjax.data.info import DataInfo
from genjax.families import base
from genjax.nn import conv, quantize
from genjax.nn.losses import MIN_LOG_SCALE, bernoulli_nll, discretized_logistic_log_prob, discretized_logistic_mean


@dataclasses.dataclass(frozen=True)
class VQVAEConfig:
  """The networks of section 4.1 (two 4x4 stride-2 convolutions, two residual 3x3 blocks, all
  256 hidden units; the decoder mirrors them), K = 512 codes, beta = 0.25, EMA decay 0.99."""

  hidden: int = 256  # channels of the convolutions and residual blocks
  residual_hidden: int = 256  # the 3x3 convolution inside a residual block
  residual_blocks: int = 2
  downsamples: int = 2  # 4x4 stride-2 convolutions: the latent grid is H / 2**downsamples
  num_codes: int = 512  # K
  code_dim: int = 64  # D
  beta: float = 0.25  # the commitment weight
  ema_decay: float = 0.99  # the codebook's EMA (Appendix A.1)
  ema_epsilon: float = 1e-5  # Laplace smoothing of the cluster sizes
  restart_threshold: float = 1.0  # codes used less than this (EMA of uses per batch) restart; 0: never
  likelihood: Literal["auto", "bernoulli", "logistic"] = "auto"  # auto: bernoulli for binarized data
  num_bins: int = 256  # levels of the discretized logistic


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


class ResidualStack(nn.Module):
  """`blocks` residual blocks x + conv1x1(relu(conv3x3(relu(x)))), then a ReLU (section 4.1)."""

  hidden: int
  residual_hidden: int
  blocks: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    for _ in range(self.blocks):
      h = conv.Conv(self.residual_hidden, (3, 3), padding="SAME", dtype=self.dtype)(nn.relu(x))
      x = x + conv.Conv(self.hidden, (1, 1), dtype=self.dtype)(nn.relu(h))
    return nn.relu(x)


class Encoder(nn.Module):
  """x [B,H,W,C] -> z_e [B,h,w,D]: 4x4 stride-2 convolutions (ReLU), a 3x3 convolution, the
  residual stack, a 1x1 convolution to the code width."""

  cfg: VQVAEConfig
  dtype: Any

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    for _ in range(c.downsamples):
      x = nn.relu(conv.Conv(c.hidden, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype)(x))
    x = conv.Conv(c.hidden, (3, 3), padding="SAME", dtype=self.dtype)(x)
    x = ResidualStack(c.hidden, c.residual_hidden, c.residual_blocks, self.dtype)(x)
    return conv.Conv(c.code_dim, (1, 1), dtype=self.dtype)(x)


class Decoder(nn.Module):
  """z_q [B,h,w,D] -> likelihood parameters [B,H,W,C*P]: a 3x3 convolution, the residual stack,
  4x4 stride-2 transposed convolutions (ReLU between them)."""

  cfg: VQVAEConfig
  out_features: int
  dtype: Any

  @nn.compact
  def __call__(self, z):
    c = self.cfg
    x = conv.Conv(c.hidden, (3, 3), padding="SAME", dtype=self.dtype)(z)
    x = ResidualStack(c.hidden, c.residual_hidden, c.residual_blocks, self.dtype)(x)
    for _ in range(c.downsamples - 1):
      x = nn.relu(conv.ConvTranspose(c.hidden, (4, 4), (2, 2), "SAME", dtype=self.dtype)(x))
    return conv.ConvTranspose(self.out_features, (4, 4), (2, 2), "SAME", dtype=self.dtype)(x)


@dataclasses.dataclass(frozen=True)
class VQVAE:
  """The encoder and decoder modules and what they are for (hashable: a static argument)."""

  config: VQVAEConfig
  image_shape: Tuple[int, int, int]
  likelihood: str  # resolved: bernoulli or logistic
  encoder: Encoder
  decoder: Decoder

  @property
  def params_per_pixel(self) -> int:
    return 1 if self.likelihood == "bernoulli" else 2

  @property
  def latent_shape(self) -> Tuple[int, int]:
    h, w, _ = self.image_shape
    f = 2**self.config.downsamples
    return h // f, w // f

  def model_input(self, x):
    """Bernoulli models see {0,1}, the others [-1,1] (the batch's own range)."""
    return (x + 1.0) / 2.0 if self.likelihood == "bernoulli" else x


# ----------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------


def check_config(cfg: VQVAEConfig, info: DataInfo) -> None:
  """ConfigError, before anything compiles, for settings that cannot work."""
  if info.kind != "image":
    raise ConfigError(f"The VQ-VAE models images, but dataset {info.name!r} is {info.kind}.")
  if cfg.num_codes < 2:
    raise ConfigError(
      f"config.model.num_codes = {cfg.num_codes}: a codebook needs at least 2 codes (the paper uses 512)."
    )
  for name in ("hidden", "residual_hidden", "code_dim", "downsamples", "num_bins"):
    if getattr(cfg, name) < (2 if name == "num_bins" else 1):
      raise ConfigError(f"config.model.{name} = {getattr(cfg, name)} must be a positive integer.")
  if not 0.0 <= cfg.ema_decay < 1.0:
    raise ConfigError(f"config.model.ema_decay = {cfg.ema_decay} must be in [0, 1) (the paper uses 0.99).")
  if cfg.beta < 0 or cfg.restart_threshold < 0:
    raise ConfigError("config.model.beta and config.model.restart_threshold must be >= 0.")
  factor = 2**cfg.downsamples
  h, w, _ = info.shape
  if h % factor or w % factor:
    raise ConfigError(
      f"config.model.downsamples = {cfg.downsamples} halves the image {cfg.downsamples} times, so H and W must "
      f"be divisible by {factor}; {info.name!r} is {h}x{w}. Lower config.model.downsamples."
    )
  if base.resolve_likelihood(cfg, info) == "bernoulli" and not info.binary:
    raise ConfigError(
      f"config.model.likelihood='bernoulli' needs binary data, but {info.name!r} is not binarized: set "
      "--config.data.binarize=dynamic (or threshold), or use likelihood=logistic."
    )


def make_model(cfg: VQVAEConfig, info: DataInfo, dtype=jnp.float32) -> VQVAE:
  check_config(cfg, info)
  likelihood = base.resolve_likelihood(cfg, info)
  out = info.shape[-1] * (1 if likelihood == "bernoulli" else 2)
  dtype = jnp.dtype(dtype)
  return VQVAE(cfg, tuple(info.shape), likelihood, Encoder(cfg, dtype), Decoder(cfg, out, dtype))


def init(rng, model: VQVAE):
  """Fresh variables: {"params": {"encoder", "decoder"}, "vq": the codebook state}."""
  k_enc, k_dec, k_code = jax.random.split(rng, 3)
  x = jnp.zeros((1, *model.image_shape), jnp.float32)
  z = jnp.zeros((1, *model.latent_shape, model.config.code_dim), jnp.float32)
  return {
    "params": {
      "encoder": model.encoder.init(k_enc, x)["params"],
      "decoder": model.decoder.init(k_dec, z)["params"],
    },
    "vq": quantize.init_state(k_code, model.config.num_codes, model.config.code_dim),
  }


def encode(params, x, model: VQVAE) -> jax.Array:
  """z_e: f32[B,h,w,D]."""
  return model.encoder.apply({"params": params["encoder"]}, model.model_input(x)).astype(jnp.float32)


def codes_of(variables, x, model: VQVAE) -> jax.Array:
  """The code index of every latent position: i32[B,h,w]."""
  z = encode(variables["params"], x, model)
  return quantize.nearest(z.reshape(-1, z.shape[-1]), variables["vq"]["codebook"]).reshape(z.shape[:-1])


def decode_params(params, z_q, model: VQVAE) -> jax.Array:
  """Likelihood parameters f32[B,H,W,C,P] of p(x | z_q)."""
  out = model.decoder.apply({"params": params["decoder"]}, z_q).astype(jnp.float32)
  return out.reshape(out.shape[0], *model.image_shape, model.params_per_pixel)


def log_likelihood(x, params_BxHxWxCxP, model: VQVAE) -> jax.Array:
  """log p(x | z_q) in nats per image, over the flattened pixels (see genjax.families.vae)."""
  d = int(np.prod(model.image_shape))
  x = x.reshape(x.shape[0], d)
  p = params_BxHxWxCxP.reshape(x.shape[0], d, model.params_per_pixel)
  if model.likelihood == "bernoulli":
    return -jnp.sum(bernoulli_nll(p[..., 0], model.model_input(x)), axis=-1)
  return discretized_logistic_log_prob(
    x, p[..., 0], jnp.maximum(p[..., 1], MIN_LOG_SCALE), model.config.num_bins, event_dims=1
  )


def mean_image(params_BxHxWxCxP, model: VQVAE) -> jax.Array:
  """E[x | z_q] in [-1, 1]."""
  if model.likelihood == "bernoulli":
    return jax.nn.sigmoid(params_BxHxWxCxP[..., 0]) * 2.0 - 1.0
  mean, log_scale = params_BxHxWxCxP[..., 0], jnp.maximum(params_BxHxWxCxP[..., 1], MIN_LOG_SCALE)
  return discretized_logistic_mean(mean, log_scale, model.config.num_bins)


def forward(params, vq_state, x, model: VQVAE) -> Dict[str, jax.Array]:
  """The model on a batch: z_e [B,h,w,D], codes i32[B*h*w], log p(x|z_q) f32[B] (through the
  straight-through z_q), the commitment ||z_e - sg[z_q]||^2 / D f32[B]."""
  z_e = encode(params, x, model)
  flat = z_e.reshape(-1, z_e.shape[-1])
  codes = quantize.nearest(jax.lax.stop_gradient(flat), vq_state["codebook"])
  z_q = vq_state["codebook"][codes].reshape(z_e.shape)
  log_px = log_likelihood(x, decode_params(params, quantize.straight_through(z_e, z_q), model), model)
  commitment = jnp.mean(jnp.square(z_e - jax.lax.stop_gradient(z_q)), axis=(1, 2, 3))
  return {"z_e": flat, "codes": codes, "log_px": log_px, "commitment": commitment}


def loss(params, state, batch, rng, i, model: VQVAE):
  """The training loss and, as the new "vq" collection, the codebook after this batch's EMA step
  and restarts: (loss, (metrics, {"vq": state})). `state` is the TrainState (its "vq" collection)."""
  del i
  cfg = model.config
  vq_state = state.extra["vq"]
  x = batch["image"]
  out = forward(params, vq_state, x, model)
  dims = float(np.prod(model.image_shape))
  recon = -jnp.mean(out["log_px"])
  commitment = jnp.mean(out["commitment"])
  value = recon / dims + cfg.beta * commitment
  new_state = quantize.ema_update(vq_state, out["z_e"], out["codes"], cfg.ema_decay, cfg.ema_epsilon)
  if cfg.restart_threshold > 0:
    new_state = quantize.restart_dead_codes(new_state, out["z_e"], jax.random.fold_in(rng, 1), cfg.restart_threshold)
  metrics = {
    "loss": value,
    "recon_nats": recon,
    "commitment": commitment,
    **quantize.usage(out["codes"], cfg.num_codes),
  }
  return value, (metrics, {"vq": new_state})


def updates(model: VQVAE) -> Tuple[step_lib.Update, ...]:
  return (step_lib.Update(functools.partial(loss, model=model)),)


def bound_terms(variables, x, model: VQVAE) -> Dict[str, jax.Array]:
  """Per image: the reconstruction -log p(x|z_q) and the uniform prior's h w log K, nats f32[B]."""
  out = forward(variables["params"], variables["vq"], x, model)
  h, w = model.latent_shape
  prior = jnp.full_like(out["log_px"], h * w * math.log(model.config.num_codes))
  return {"recon_nats": -out["log_px"], "prior_nats": prior, "nll_bound": prior - out["log_px"]}


def eval_sums(variables, batch, rng, model: VQVAE):
  """Sums over the real examples of the reconstruction and the uniform-prior bound; (sums, count)."""
  del rng
  terms = bound_terms(variables, batch["image"], model)
  return step_lib.masked_sums(terms, step_lib.batch_mask(batch, terms["nll_bound"].shape[0]))


def evaluate(variables, batches, rng, model: VQVAE) -> Dict[str, float]:
  """Over every real example: the reconstruction and the bound with the uniform prior over codes,
  in nats per image and bits/dim, and the codebook's perplexity and use over the whole split."""
  del rng
  totals: Dict[str, float] = {}
  count = 0.0
  counts = np.zeros(model.config.num_codes, np.float64)
  for batch in batches:
    x = jnp.asarray(batch["image"])
    mask = np.asarray(batch.get("mask", np.ones(len(x), np.float32))) > 0
    sums, n = jax.device_get(_evaluation_sums(variables, {"image": x, "mask": jnp.asarray(mask, jnp.float32)}, model))
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + float(v)
    count += float(n)
    codes = np.asarray(_codes(variables, x, model))[mask]
    counts += np.bincount(codes.ravel(), minlength=model.config.num_codes)
  if not count:
    raise ConfigError("evaluate() got no real examples (every mask was 0, or no batches).")
  out = {k: v / count for k, v in totals.items()}
  bits = float(np.prod(model.image_shape)) * math.log(2.0)
  out["bits_per_dim_bound"] = out["nll_bound"] / bits
  p = counts / counts.sum()
  out["perplexity"] = float(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))))
  out["codes_used"] = float(np.mean(counts > 0))
  out["num_examples"] = count
  return out


@functools.partial(jax.jit, static_argnames="model")
def _evaluation_sums(variables, batch, model: VQVAE):
  return eval_sums(variables, batch, None, model)


@functools.partial(jax.jit, static_argnames="model")
def _codes(variables, x, model: VQVAE):
  return codes_of(variables, x, model)


def decode_codes(variables, codes_Bxhxw, model: VQVAE) -> jax.Array:
  """Images f32[B,H,W,C] in [-1, 1] decoded from a grid of code indices."""
  z_q = variables["vq"]["codebook"][codes_Bxhxw]
  return mean_image(decode_params(variables["params"], z_q, model), model)


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """VQ-VAE samples decode codes drawn uniformly, the prior the VQ-VAE is trained against (a
  learnt prior over the codes is a second model)."""


def sample(variables, rng, n: int, model: VQVAE, options: SampleOptions = SampleOptions()):
  del options
  codes = jax.random.randint(rng, (n, *model.latent_shape), 0, model.config.num_codes)
  return decode_codes(variables, codes, model)


def pictures(variables, batch, rng, model: VQVAE, n: int = 64):
  """Rows of test images, each followed by the row of their reconstructions through the codes."""
  del rng, n
  reconstruct = lambda x: decode_codes(variables, codes_of(variables, x, model), model)  # noqa: E731
  return {"reconstructions": base.reconstruction_pairs(jnp.asarray(batch["image"]), reconstruct)}


def notes(exp: Experiment, model: VQVAE) -> str:
  cfg = model.config
  h, w = model.latent_shape
  return f"VQ-VAE: {h}x{w} codes of K={cfg.num_codes} (D={cfg.code_dim}), {model.likelihood} likelihood, EMA codebook"
