"""Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models"): a frozen autoencoder maps images to latents, the diffusion model learns the latents, and
its samples are decoded back to images.

`config.model.autoencoder` names the autoencoder: a .safetensors file of an AutoencoderKL
(Stable Diffusion's KL-f8 in diffusers' or the original layout), a diffusers model folder, or a
genjax run of the autoencoder family (genjax.families.autoencoder.load_frozen reads each, the
run's checkpoints read-only). Its weights ride in the train state as the "autoencoder" collection,
never updated and never averaged into the EMA, so a diffusion checkpoint holds everything its
samples need. Each training batch is encoded inside the compiled step: z = latent_scale * a draw
of the posterior N(mean, exp(logvar)) (LDM's get_first_stage_encoding; SD's scale 0.18215 gives
its latents unit variance); samples are divided by the scale and decoded. A latent model's
bits/dim would be a likelihood of latents, not of pixels, so it reports none.

Shapes: B batch, H W C the images, h w L the latents (H / f, W / f, latent channels).
"""

import dataclasses
import functools
import os
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp

from genjax import errors
from genjax.data.info import DataInfo

COLLECTION = "autoencoder"  # the train state's collection that holds the frozen weights


@dataclasses.dataclass(frozen=True, eq=False)
class Frozen:
  """A loaded autoencoder: its Flax module, its variables (host arrays) and the latent scale.
  Compared and hashed by identity, so a model holding it binds as a static argument."""

  module: Any
  variables: Any
  scale: float
  path: str


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float):
  from genjax.families import autoencoder

  return autoencoder.load_frozen(path)


def load(path: str, scale: float) -> Frozen:
  """The autoencoder at `path` (loaded once per file version), with `scale`."""
  if not os.path.exists(path):
    raise errors.MissingError(
      f"config.model.autoencoder = {path!r} does not exist. Name a .safetensors file of an AutoencoderKL "
      "(e.g. Stable Diffusion's KL-f8 VAE), a diffusers model folder, or the workdir of a genjax autoencoder run."
    )
  module, variables = _load(os.path.abspath(path), os.path.getmtime(path))
  return Frozen(module, variables, float(scale), os.path.abspath(path))


def latent_shape(frozen: Frozen, image_shape: Tuple[int, int, int]) -> Tuple[int, int, int]:
  """(h, w, L) of the latents of H x W x C images, from shapes alone."""
  H, W, C = image_shape
  module = frozen.module
  if C != module.in_channels:
    raise errors.ConfigError(
      f"config.model.autoencoder = {frozen.path!r} encodes images of {module.in_channels} channels; "
      f"the dataset's have {C}. Use an autoencoder trained on this kind of image (or data.channels={module.in_channels})."
    )
  f = 2 ** (len(module.block_out_channels) - 1)
  if H % f or W % f:
    raise errors.ConfigError(
      f"config.model.autoencoder = {frozen.path!r} downsamples by {f}; the {H}x{W} images do not divide by it "
      f"(resize them to a multiple of {f}, e.g. data.image_size)."
    )
  x = jax.ShapeDtypeStruct((1, H, W, C), jnp.float32)
  mean, _ = jax.eval_shape(lambda x: module.apply(frozen.variables, x, method=module.encode), x)
  return tuple(mean.shape[1:])


def latent_info(info: DataInfo, frozen: Frozen) -> DataInfo:
  """The dataset as the diffusion network sees it: latents of the images' shape."""
  return dataclasses.replace(info, shape=latent_shape(frozen, tuple(info.shape)))


def encode(ae_variables, images_BxHxWxC, rng, frozen: Frozen):
  """scale * a draw of each image's posterior: f32[B, h, w, L] (one key per example, so every
  parallel mode draws the same)."""
  from genjax.core.parallel import example_keys

  module = frozen.module
  mean, logvar = module.apply(ae_variables, images_BxHxWxC.astype(jnp.float32), method=module.encode)
  keys = example_keys(jax.random.fold_in(rng, 5), images_BxHxWxC.shape[0])
  eps = jax.vmap(lambda k: jax.random.normal(k, mean.shape[1:]))(keys)
  return frozen.scale * (mean + jnp.exp(0.5 * logvar) * eps)


def encoded(ae_variables: Optional[Any], batch, rng, frozen: Optional[Frozen]):
  """The batch with its images replaced by their latents (as it is without an autoencoder)."""
  if frozen is None:
    return batch
  if ae_variables is None:
    raise errors.ConfigError(
      f"This latent diffusion model needs the '{COLLECTION}' collection in its variables (the frozen autoencoder "
      "the train state carries); pass state.variables() or add it."
    )
  return {**batch, "image": encode(ae_variables, batch["image"], rng, frozen)}


@functools.partial(jax.jit, static_argnames="frozen")
def decode(ae_variables, z_Bxhxwxl, frozen: Frozen):
  """Images f32[B, H, W, C] in [-1, 1] from scaled latents."""
  module = frozen.module
  x = module.apply(ae_variables, z_Bxhxwxl / frozen.scale, method=module.decode)
  return jnp.clip(x, -1.0, 1.0)
