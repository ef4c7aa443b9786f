"""The KL autoencoder of latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models", Sec. 3.1 and Appendix G): the first stage that maps images to a small
latent grid, trained here, and read back frozen by the families that diffuse in its latents.

The network is genjax.nn.autoencoder_kl.AutoencoderKL (Stable Diffusion's KL-f8 and diffusers'
AutoencoderKL): an encoder to a diagonal Gaussian q(z|x) over latents z[B, H/f, W/f, L], f =
2**(len(block_out_channels) - 1), and a decoder back to images. 28x28 images take up to 3 levels
(f = 4: 28 -> 14 -> 7); Stable Diffusion's 4 levels (f = 8) need sides divisible by 8.

Objective. LDM trains it with `LPIPSWithDiscriminator` (ldm/modules/losses/contperceptual.py,
configured by configs/autoencoder/autoencoder_kl_32x32x4.yaml: kl_weight 1e-6, disc_start 50001,
disc_weight 0.5, base_learning_rate 4.5e-6, batch 12, accumulate_grad_batches 2): per pixel
rec = |x - x_hat| + LPIPS, nll = rec / exp(logvar) + logvar, and

    loss = sum(nll) / B + kl_weight * sum(KL) / B   (+ an adaptive patch-GAN term after disc_start)

with x_hat decoded from a posterior sample and KL = KL(q(z|x) || N(0, I)) summed over the
latents. Two terms need networks genjax cannot have offline and are left out: the LPIPS perceptual
term (pretrained VGG16 features and LPIPS' linear heads) and the patch-GAN adversarial term
(NLayerDiscriminator, hinge loss, weight disc_weight times the ratio of gradient norms at the
decoder's last layer, from step disc_start). What remains is the reconstruction term
(`reconstruction`: "l1" as LDM, or "l2", the squared error) summed over pixels, plus kl_weight * KL,
each averaged over the batch. `logvar`: LDM declares it a learned scalar, but its
AutoencoderKL.configure_optimizers hands Adam only the encoder, decoder, quant_conv and
post_quant_conv parameters, so it stays at logvar_init = 0 and nll = rec; here it is a fixed
config value (0 by default, which is LDM's behaviour; another value scales the reconstruction term
by exp(-logvar) and adds a constant). LDM's Adam uses betas (0.5, 0.9) and a learning rate of
base_learning_rate * batch * accumulation * GPUs (4.5e-6 * 12 * 2 = 1.08e-4 per GPU).

Evaluation (eval_sums, evaluate): each image is decoded from its posterior mean and clipped to
[-1, 1]; per image the mean squared error and mean absolute error over its pixels, the PSNR in dB
(10 log10(2^2 / MSE): the data span [-1, 1]) and the KL in nats (summed over latents). `pictures`
saves rows of test images above rows of their reconstructions. `sample` decodes z ~ N(0, I):
with kl_weight 1e-6 the latents are far from N(0, I), so these are not images of the data: the
point of this model is its latent space, which a diffusion model then learns.

Frozen use by other families: `load_frozen(path) -> (AutoencoderKL, variables)` reads a
.safetensors file (SD's KL-f8, diffusers' or the original layout), a diffusers model folder or the
workdir of a run of this family (its newest readable checkpoint, EMA weights when the run kept
them, never writing to the run); `scaling_factor(path)` the latent scale that goes with it (SD's
0.18215; 1.0 for a genjax run, whose latents should instead be scaled by 1 / latent_std(...) of a
batch of training images, as LDM's scale_by_std does).

Shapes: B batch, H W C image, h w L latents (H/f, W/f, latent_channels).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from typing import Any, Dict, Literal, Optional, Tuple

import jax
import jax.numpy as jnp

from genjax import config as config_lib
from genjax import errors
from genjax.config import ConfigError, Experiment
from genjax.core import parallel
from genjax.core import step as step_lib
from genjax.data.info import DataInfo
from genjax.families import base, frozen
from genjax.nn import autoencoder_kl
from genjax.nn.autoencoder_kl import AutoencoderKL

log = logging.getLogger("genjax")

FAMILY = "autoencoder"  # this family's name in genjax.families and in a run's config.json


@dataclasses.dataclass(frozen=True)
class Config:
  """The AutoencoderKL and its objective; the defaults are LDM's KL-f8
  (configs/autoencoder/autoencoder_kl_32x32x4.yaml: ch 128, ch_mult 1,2,4,4, 2 res blocks, z 4)."""

  block_out_channels: Tuple[int, ...] = (128, 256, 512, 512)  # one level each; f = 2**(levels - 1)
  layers_per_block: int = 2  # ResnetBlocks per encoder level (the decoder has one more)
  latent_channels: int = 4  # L
  norm_num_groups: int = 32  # GroupNorm groups: must divide every entry of block_out_channels
  reconstruction: Literal["l1", "l2"] = "l1"  # per pixel |x - x_hat| (LDM) or (x - x_hat)^2
  kl_weight: float = 1e-6  # LDM's kl_weight
  logvar: float = 0.0  # LDM's output log-variance: nll = rec / exp(logvar) + logvar (fixed: module docstring)
  sample_posterior: bool = True  # train on z ~ q(z|x), as LDM; False: on the posterior mean


@dataclasses.dataclass(frozen=True)
class Autoencoder:
  """The family's model: the network, the config and the image shape (hashable, so it binds as a
  static argument)."""

  net: AutoencoderKL
  config: Config
  image_shape: Tuple[int, int, int]

  @property
  def latent_shape(self) -> Tuple[int, int, int]:
    """(h, w, L) of the latents of one image."""
    H, W, _ = self.image_shape
    f = self.net.downsampling_factor
    return H // f, W // f, self.net.latent_channels


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """Samples decode latents drawn from N(0, I); there is nothing to choose."""


CONFIGS = (Config,)
SAMPLE_OPTIONS = {"Config": SampleOptions}


# ----------------------------------------------------------------------------------------------
# The model of an experiment
# ----------------------------------------------------------------------------------------------


def _levels_that_fit(H: int, W: int) -> int:
  """The most levels whose downsampling factor divides H and W."""
  n = 1
  while H % 2**n == 0 and W % 2**n == 0:
    n += 1
  return n


def check_config(cfg: Config, info: DataInfo) -> None:
  """Raises ConfigError, before anything compiles, for settings that cannot work together."""
  if info.kind != "image":
    raise ConfigError(
      f"The autoencoder family encodes images, but dataset {info.name!r} is {info.kind}: "
      "use --config.data.name=mnist|fashion_mnist|cifar10|folder."
    )
  channels = tuple(cfg.block_out_channels)
  if not channels or min(channels) <= 0 or any(c % cfg.norm_num_groups for c in channels):
    raise ConfigError(
      f"config.model.block_out_channels = {channels} must list positive widths, each divisible by "
      f"norm_num_groups = {cfg.norm_num_groups} (GroupNorm), e.g. (32, 64, 64) with norm_num_groups 32."
    )
  for name in ("layers_per_block", "latent_channels", "norm_num_groups"):
    if getattr(cfg, name) < 1:
      raise ConfigError(f"config.model.{name} = {getattr(cfg, name)} must be a positive integer.")
  H, W, _ = info.shape
  f = 2 ** (len(channels) - 1)
  if H % f or W % f:
    most = _levels_that_fit(H, W)
    raise ConfigError(
      f"config.model.block_out_channels has {len(channels)} levels, which downsample by f = {f}; the {H}x{W} "
      f"images of {info.name!r} do not divide by it. Use at most {most} levels here (f = {2 ** (most - 1)}), "
      "or images whose sides divide by f."
    )
  if cfg.reconstruction not in ("l1", "l2"):
    raise ConfigError(f"config.model.reconstruction = {cfg.reconstruction!r} must be 'l1' (LDM's) or 'l2'.")
  if not cfg.kl_weight >= 0 or not math.isfinite(cfg.kl_weight):
    raise ConfigError(f"config.model.kl_weight = {cfg.kl_weight} must be a finite number >= 0 (LDM: 1e-6).")
  if not math.isfinite(cfg.logvar):
    raise ConfigError(f"config.model.logvar = {cfg.logvar} must be finite (LDM's is 0).")


def make_model(cfg: Config, info: DataInfo, dtype=jnp.float32) -> Autoencoder:
  """The Autoencoder of model config `cfg` on data `info` (checked first): an AutoencoderKL with
  the images' channels in and out, computing in `dtype`."""
  check_config(cfg, info)
  C = info.shape[-1]
  net = AutoencoderKL(
    block_out_channels=tuple(cfg.block_out_channels),
    layers_per_block=cfg.layers_per_block,
    latent_channels=cfg.latent_channels,
    in_channels=C,
    out_channels=C,
    norm_num_groups=cfg.norm_num_groups,
    dtype=jnp.dtype(dtype),
  )
  return Autoencoder(net, cfg, tuple(info.shape))


# ----------------------------------------------------------------------------------------------
# Pure functions: loss, evaluation, sampling (call them under your own jax.jit)
# ----------------------------------------------------------------------------------------------


def posterior_noise(rng, batch_size: int, latent_shape) -> jax.Array:
  """Standard normals f32[B, h, w, L], one draw per example from (rng, the example's index), so
  every parallel mode draws the same."""
  keys = parallel.example_keys(rng, batch_size)
  return parallel.per_example(lambda key: jax.random.normal(key, tuple(latent_shape), jnp.float32), keys)


def reconstruction_error(x_BxHxWxC, recon_BxHxWxC, kind: str) -> jax.Array:
  """The per-pixel reconstruction term: |x - x_hat| ("l1") or (x - x_hat)^2 ("l2"): f32[B,H,W,C]."""
  diff = recon_BxHxWxC.astype(jnp.float32) - x_BxHxWxC.astype(jnp.float32)
  return jnp.abs(diff) if kind == "l1" else jnp.square(diff)


def loss(params, batch, rng, model: Autoencoder):
  """LDM's first-stage loss without LPIPS and the GAN: (loss, {loss, nll, l1 or mse, kl}).

  loss = mean_B sum_pixels (rec / exp(logvar) + logvar) + kl_weight * mean_B KL, with the
  reconstruction decoded from z ~ q(z|x) (or its mean, without sample_posterior). Metrics: nll
  and kl per image, the reconstruction term's mean per pixel (named l1 or mse)."""
  cfg, net = model.config, model.net
  variables = {"params": params}
  x = batch["image"].astype(jnp.float32)
  mean, logvar = net.apply(variables, x, method=AutoencoderKL.encode)
  z = mean
  if cfg.sample_posterior:
    z = mean + jnp.exp(0.5 * logvar) * posterior_noise(rng, x.shape[0], mean.shape[1:])
  recon = net.apply(variables, z, method=AutoencoderKL.decode)
  rec = reconstruction_error(x, recon, cfg.reconstruction)
  nll_B = jnp.sum(rec * math.exp(-cfg.logvar) + cfg.logvar, axis=(1, 2, 3))
  kl_B = autoencoder_kl.kl(mean, logvar)
  value = jnp.mean(nll_B) + cfg.kl_weight * jnp.mean(kl_B)
  rec_name = "l1" if cfg.reconstruction == "l1" else "mse"
  return value, {"loss": value, "nll": jnp.mean(nll_B), rec_name: jnp.mean(rec), "kl": jnp.mean(kl_B)}


updates = base.loss_updates(loss)


def reconstruct(variables, x_BxHxWxC, model: Autoencoder):
  """Images decoded from their posterior means, clipped to [-1, 1], and the posterior:
  (recon f32[B,H,W,C], mean f32[B,h,w,L], logvar f32[B,h,w,L])."""
  variables = {"params": variables["params"]}
  mean, logvar = model.net.apply(variables, x_BxHxWxC.astype(jnp.float32), method=AutoencoderKL.encode)
  recon = model.net.apply(variables, mean, method=AutoencoderKL.decode)
  return jnp.clip(recon, -1.0, 1.0), mean, logvar


def reconstruction_metrics(variables, x_BxHxWxC, model: Autoencoder) -> Dict[str, jax.Array]:
  """Per image, from the posterior mean: mse and l1 (means over its pixels of the clipped
  reconstruction's error), psnr in dB (10 log10(4 / mse) for data in [-1, 1]) and kl (nats,
  summed over latents): each f32[B]."""
  recon, mean, logvar = reconstruct(variables, x_BxHxWxC, model)
  diff = recon - x_BxHxWxC.astype(jnp.float32)
  mse = jnp.mean(jnp.square(diff), axis=(1, 2, 3))
  return {
    "mse": mse,
    "l1": jnp.mean(jnp.abs(diff), axis=(1, 2, 3)),
    "psnr": 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10)),
    "kl": autoencoder_kl.kl(mean, logvar),
  }


def eval_sums(variables, batch, rng, model: Autoencoder):
  """Sums over the real examples of reconstruction_metrics (deterministic: `rng` is unused), and
  their number."""
  del rng
  values = reconstruction_metrics(variables, batch["image"], model)
  return step_lib.masked_sums(values, step_lib.batch_mask(batch, batch["image"].shape[0]))


_jitted_eval_sums = jax.jit(
  lambda batch, params, model: eval_sums({"params": params}, batch, None, model), static_argnums=2
)


def evaluate(variables, batches, rng, model: Autoencoder) -> Dict[str, float]:
  """The test reconstruction error over every real example of `batches`: mse, l1, psnr (dB) and
  kl (nats) per image, as eval_sums, and num_examples."""
  del rng
  means, count, flops = step_lib.exact_means(_jitted_eval_sums, batches, variables["params"], model)
  return {**means, "num_examples": count, "flops": flops}


def sample(variables, rng, n: int, model: Autoencoder, options: SampleOptions = SampleOptions()):
  """n images f32[n,H,W,C] in [-1, 1] decoded from z ~ N(0, I) of the latent shape. Not what this
  model is for: with a small kl_weight the posterior is far from N(0, I)."""
  del options
  z = posterior_noise(rng, n, model.latent_shape)
  images = model.net.apply({"params": variables["params"]}, z, method=AutoencoderKL.decode)
  return jnp.clip(images, -1.0, 1.0)


def _grid(n: int) -> Tuple[int, int]:
  """(pairs of rows, columns) of the reconstruction grid of n images."""
  cols = 8 if n >= 16 else max(1, n // 2)
  return max(1, n // (2 * cols)), cols


def pictures(variables, batch, rng, model: Autoencoder, n: int = 64):
  """{"reconstructions": rows of test images, each followed by the row of their reconstructions
  (from the posterior mean): f32[2 * rows * cols, H, W, C]} for a batch of n images (`rng` unused)."""
  del rng
  x = jnp.asarray(batch["image"])
  rows, cols = _grid(min(n, x.shape[0]))
  x = x[: rows * cols]
  recon, _, _ = reconstruct(variables, x, model)
  pairs = jnp.stack([x.reshape(rows, cols, *x.shape[1:]), recon.reshape(rows, cols, *x.shape[1:])], 1)
  return {"reconstructions": pairs.reshape(2 * rows * cols, *x.shape[1:])}


def layouts(model: Autoencoder, n: int) -> Dict[str, base.Layout]:
  rows, cols = _grid(n)
  return {
    "reconstructions": base.Layout(
      ncols=cols, rows=("input", "recon") * rows, caption="test images and their reconstructions (posterior mean)"
    ),
    "samples": base.Layout(caption="decoded z ~ N(0, I): not what this model is for"),
  }


def init(rng, model: Autoencoder):
  """Fresh variables: {"params": ...} of the AutoencoderKL."""
  x = jnp.zeros((1, *model.image_shape), jnp.float32)
  return {"params": model.net.init(rng, x, sample_posterior=False)["params"]}


def notes(exp: Experiment, model: Autoencoder) -> str:
  cfg = model.config
  h, w, L = model.latent_shape
  return (
    f"AutoencoderKL {tuple(cfg.block_out_channels)}, {cfg.layers_per_block} per level, f={model.net.downsampling_factor}, "
    f"latents {h}x{w}x{L}, {autoencoder_kl.count_params(model.net):,} parameters; loss {cfg.reconstruction} + "
    f"{cfg.kl_weight:g} KL (LDM's first stage without LPIPS and the patch GAN)"
  )


# ----------------------------------------------------------------------------------------------
# Frozen use by other families: load_frozen, scaling_factor, latent_std
# ----------------------------------------------------------------------------------------------

_WHAT_LOADS = (
  "load_frozen reads a .safetensors file of an AutoencoderKL (Stable Diffusion's KL-f8 VAE, in diffusers' or the "
  "original layout), a diffusers model folder (config.json and diffusion_pytorch_model.safetensors, or a pipeline "
  "folder with vae/), or the workdir of a genjax autoencoder run (config.json and checkpoints/; "
  "experiments/autoencoder_kl_fashion_mnist.py trains one)"
)

# diffusers' AutoencoderKL.__init__ defaults, for the keys a config.json leaves out
_DIFFUSERS_DEFAULTS = {
  "in_channels": 3,
  "out_channels": 3,
  "block_out_channels": [64],
  "layers_per_block": 1,
  "latent_channels": 4,
  "norm_num_groups": 32,
  "scaling_factor": autoencoder_kl.SCALING_FACTOR,
}


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path} cannot be read as JSON ({type(e).__name__}: {e}). {_WHAT_LOADS}.") from None
  if not isinstance(data, dict):
    raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not an object. {_WHAT_LOADS}.")
  return data


def _is_diffusers_config(data: dict) -> bool:
  return (
    "family" not in data
    and data.get("_class_name", "AutoencoderKL") == "AutoencoderKL"
    and "block_out_channels" in data
  )


def _source(path) -> Tuple[str, str, Optional[dict]]:
  """What `path` is: ("file", path, the diffusers config.json beside it or None), ("diffusers",
  folder, its config.json) or ("run", workdir, its config.json); MissingError or ConfigError (one
  paragraph) otherwise."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise errors.MissingError(f"No autoencoder at {path}: nothing is there. {_WHAT_LOADS}.")
  if os.path.isfile(path):  # diffusers' diffusion_pytorch_model.safetensors: its folder's config.json applies
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    try:
      data = _read_json(beside) if os.path.isfile(beside) else {}
    except ConfigError:  # not a diffusers folder's config: the file is read as SD's KL-f8
      data = {}
    return "file", path, (data if _is_diffusers_config(data) else None)
  if os.path.isfile(os.path.join(path, "model_index.json")) and os.path.isdir(os.path.join(path, "vae")):
    path = os.path.join(path, "vae")  # a diffusers pipeline: its autoencoder is the vae/ sub-folder
  config_file = os.path.join(path, "config.json")
  if not os.path.isfile(config_file):
    listed = sorted(os.listdir(path))[:6]
    raise ConfigError(
      f"{path} is a folder without a config.json (it holds {listed or 'nothing'}), so it is neither a diffusers "
      f"model folder nor a genjax run. {_WHAT_LOADS}."
    )
  data = _read_json(config_file)
  if "family" in data:
    return "run", path, data
  if _is_diffusers_config(data):
    return "diffusers", path, data
  what = f"a diffusers {data['_class_name']}" if "_class_name" in data else "no AutoencoderKL's"
  raise ConfigError(
    f"{config_file} is {what} config (no block_out_channels of an AutoencoderKL, no genjax family), so {path} "
    f"is neither a diffusers AutoencoderKL folder nor a genjax autoencoder run. {_WHAT_LOADS}."
  )


# what genjax.nn.autoencoder_kl builds (Stable Diffusion's VAE), for the diffusers options that vary it
_BUILT = {"act_fn": "silu", "use_quant_conv": True, "use_post_quant_conv": True, "mid_block_add_attention": True}


def _diffusers_module(where: str, data: dict) -> AutoencoderKL:
  """The AutoencoderKL a diffusers config.json describes (diffusers' defaults for absent keys);
  `where`, the folder or file it came with, names it in errors."""
  unsupported = [f"{key}={data[key]!r}" for key, built in _BUILT.items() if key in data and data[key] != built]
  if unsupported:
    raise ConfigError(
      f"The diffusers config.json of {where} describes an AutoencoderKL genjax does not build ({', '.join(unsupported)}): "
      "genjax.nn.autoencoder_kl has the SiLU, quant convs and mid-block attention of Stable Diffusion's VAE."
    )
  cfg = {**_DIFFUSERS_DEFAULTS, **data}
  return AutoencoderKL(
    block_out_channels=tuple(cfg["block_out_channels"]),
    layers_per_block=int(cfg["layers_per_block"]),
    latent_channels=int(cfg["latent_channels"]),
    in_channels=int(cfg["in_channels"]),
    out_channels=int(cfg["out_channels"]),
    norm_num_groups=int(cfg["norm_num_groups"]),
  )


def _check_family(workdir: str, data: dict) -> None:
  """ConfigError naming the family when `workdir` is a run of another family."""
  family = data.get("family")
  if family != FAMILY:
    raise ConfigError(
      f"{workdir} is a genjax run of the {family!r} family (experiment {data.get('name')!r}), not of the "
      f"{FAMILY} family. {_WHAT_LOADS}."
    )


def _run_module(data: dict, params: dict) -> AutoencoderKL:
  """The AutoencoderKL of a run of this family: its config.json's architecture, the channels its
  parameters encode and decode."""
  cfg = config_lib.from_dict(data, {FAMILY: CONFIGS}).model
  return AutoencoderKL(
    block_out_channels=tuple(cfg.block_out_channels),
    layers_per_block=cfg.layers_per_block,
    latent_channels=cfg.latent_channels,
    in_channels=int(params["encoder"]["conv_in"]["kernel"].shape[2]),
    out_channels=int(params["decoder"]["conv_out"]["kernel"].shape[3]),
    norm_num_groups=cfg.norm_num_groups,
  )


def load_frozen(path) -> Tuple[AutoencoderKL, Dict[str, Any]]:
  """(module, variables) of the AutoencoderKL at `path`, float32, for a family that encodes and
  decodes with it frozen (module.apply(variables, x, method=module.encode), ... method=module.decode).

  `path` is one of
    - a .safetensors file: Stable Diffusion's KL-f8 (AutoencoderKL()'s architecture) in diffusers'
      or the original CompVis/LDM layout, alone or inside a full SD checkpoint
      (genjax.nn.autoencoder_kl.load_weights); a file beside a diffusers config.json (a model
      folder's diffusion_pytorch_model.safetensors) has that config's architecture;
    - a diffusers model folder: config.json (block_out_channels, layers_per_block, latent_channels,
      norm_num_groups, in/out_channels; diffusers' defaults where absent) and
      diffusion_pytorch_model.safetensors; or a pipeline folder, whose vae/ is used;
    - the workdir of a run of this family: WORKDIR/config.json gives the architecture, the newest
      readable checkpoint the weights (the EMA's when the run kept one, else the raw ones). The run
      is only read: nothing in it is moved, deleted or written.
  MissingError for a path with nothing there or a run without checkpoints; ConfigError for a
  folder that is neither, a run of another family or a file of another architecture;
  CheckpointError when no checkpoint of the run can be read.
  """
  kind, where, data = _source(path)
  if kind in ("file", "diffusers"):
    module = AutoencoderKL() if data is None else _diffusers_module(where, data)
    return module, autoencoder_kl.load_weights(where, module)
  _check_family(where, data)
  tree, step = frozen.newest_state(where, "autoencoder run")
  variables, is_ema = frozen.weights(tree)
  params = variables["params"]
  log.info("Autoencoder of %s: checkpoint %d, %s weights.", where, step, "EMA" if is_ema else "raw")
  return _run_module(data, params), {"params": params}


def scaling_factor(path) -> float:
  """The factor latents are multiplied by before diffusion for the autoencoder at `path` (as
  load_frozen reads it): SD's 0.18215 for a .safetensors file, a diffusers config.json's
  scaling_factor (0.18215 where absent) for a diffusers folder or a file in one, and 1.0 for a genjax run, which records no
  factor: its latents' scale is whatever training gave them, so latent diffusion should use
  1 / latent_std(module, variables, training images, rng) instead (LDM's scale_by_std)."""
  kind, where, data = _source(path)
  if kind in ("file", "diffusers"):
    return float((data or {}).get("scaling_factor", autoencoder_kl.SCALING_FACTOR))
  _check_family(where, data)
  return 1.0


@functools.partial(jax.jit, static_argnums=2)
def _posterior(variables, x_BxHxWxC, module: AutoencoderKL):
  return module.apply(variables, x_BxHxWxC, method=AutoencoderKL.encode)


def latent_std(module: AutoencoderKL, variables, images_BxHxWxC, rng=None) -> float:
  """The standard deviation over every element of the latents of a batch of images: of posterior
  draws z ~ q(z|x) when `rng` is given (LDM's scale_by_std sets scale_factor = 1 / this, on its
  first training batch), else of the posterior means. Latent diffusion multiplies latents by
  1 / latent_std so they have unit variance, as SD's 0.18215 does for its VAE."""
  mean, logvar = _posterior(variables, jnp.asarray(images_BxHxWxC, jnp.float32), module)
  z = mean if rng is None else mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape)
  return float(jnp.std(z))
