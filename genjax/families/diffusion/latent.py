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

With `config.model.latent_cache`, the encoder runs once per dataset instead of in every step:
the posterior moments (mean, logvar) of every training image, and of its mirror image when
data.flip is on, are written to $GENJAX_HOME/latent_cache/ (keyed by the autoencoder's weights
and the data config), and the training batches carry them in place of the images. The step draws
z from them with the same per-example keys, so both ways train on the same latents (to the
encoder's float error). Evaluation batches are still encoded in the step.

Shapes: B batch, H W C the images, h w L the latents (H / f, W / f, latent channels).
"""

import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors
from genjax.data.info import DataInfo

log = logging.getLogger("genjax")

COLLECTION = "autoencoder"  # the train state's collection that holds the frozen weights
MOMENTS = "moments"  # a cached batch's key: f32[B, h, w, 2L], the posterior's mean and log-variance
CACHE_BATCH = 256  # images encoded at once when the cache is written


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


def moments(ae_variables, images_BxHxWxC, frozen: Frozen):
  """The posterior's mean and log-variance of each image, side by side: f32[B, h, w, 2L]."""
  module = frozen.module
  mean, logvar = module.apply(ae_variables, images_BxHxWxC.astype(jnp.float32), method=module.encode)
  return jnp.concatenate([mean, logvar], axis=-1)


def draw(moments_Bxhxwx2L, rng, scale: float):
  """scale * a draw of each posterior N(mean, exp(logvar)): f32[B, h, w, L] (one key per example,
  so every parallel mode draws the same)."""
  from genjax.core.parallel import example_keys

  mean, logvar = jnp.split(moments_Bxhxwx2L, 2, axis=-1)
  keys = example_keys(jax.random.fold_in(rng, 5), mean.shape[0])
  eps = jax.vmap(lambda k: jax.random.normal(k, mean.shape[1:]))(keys)
  return scale * (mean + jnp.exp(0.5 * logvar) * eps)


def encode(ae_variables, images_BxHxWxC, rng, frozen: Frozen):
  """scale * a draw of each image's posterior: f32[B, h, w, L]."""
  return draw(moments(ae_variables, images_BxHxWxC, frozen), rng, frozen.scale)


def encoded(ae_variables: Optional[Any], batch, rng, frozen: Optional[Frozen]):
  """The batch with its images replaced by their latents (as it is without an autoencoder); a
  batch from the latent cache carries the moments, which are drawn from."""
  if frozen is None:
    return batch
  if MOMENTS in batch:
    rest = {k: v for k, v in batch.items() if k != MOMENTS}
    return {**rest, "image": draw(batch[MOMENTS], rng, frozen.scale)}
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


# ----------------------------------------------------------------------------------------------
# The latent cache: the encoder run once per dataset
# ----------------------------------------------------------------------------------------------


def weights_fingerprint(frozen: Frozen) -> str:
  """sha256 of the autoencoder's weights (names, shapes, dtypes, bytes): a cache made by other
  weights is another file."""
  h = hashlib.sha256()
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(frozen.variables)[0], key=lambda kv: str(kv[0])):
    a = np.asarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}:{a.shape}:{a.dtype}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def cache_path(data_cfg, split: str, frozen: Frozen) -> str:
  """$GENJAX_HOME/latent_cache/<dataset>_<split>_<key>.moments.npy (~/.cache/genjax/ when GENJAX_HOME
  is a bucket: the cache is memory-mapped; its labels beside it in
  .labels.npy, so a cached batch decodes no image); the key covers the autoencoder's
  weights and what determines the images (the reference statistics' source key: the dataset, the
  split, the preprocessing, a folder's file fingerprint) and whether they are flipped."""
  from genjax import paths
  from genjax.data.fingerprint import source_key

  images = {**source_key(data_cfg, split), "flip": data_cfg.flip}
  key = json.dumps({"weights": weights_fingerprint(frozen), "images": images}, sort_keys=True, default=str)
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  name = "".join(c if c.isalnum() or c in "-_" else "-" for c in f"{data_cfg.name}_{split}")
  return os.path.join(paths.local_home(), "latent_cache", f"{name}_{digest}.moments.npy")


def labels_path(moments_path: str) -> str:
  return moments_path[: -len(".moments.npy")] + ".labels.npy"


def write_cache(dataset, frozen: Frozen, path: str) -> None:
  """Encodes every example of `dataset` (and its mirror image when it flips) into `path`:
  f32[F, N, h, w, 2L], F = 2 with flip (row 1: the mirrored images), and their labels i32[N]
  beside it; each written to a temporary file and renamed, the moments last, so a cache that
  exists is whole."""
  from tqdm import tqdm

  n = dataset.num_examples
  shape = latent_shape(frozen, tuple(dataset.info.shape))
  flips = 2 if dataset.flip else 1
  need = flips * n * shape[0] * shape[1] * 2 * shape[2] * 4
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    out = np.lib.format.open_memmap(
      tmp, mode="w+", dtype=np.float32, shape=(flips, n, shape[0], shape[1], 2 * shape[2])
    )
  except OSError as e:
    raise errors.StorageError(
      f"Could not write the latent cache {path} ({need / 2**20:.0f} MiB): {e}. Free space there, set GENJAX_HOME "
      "to a folder with room, or train with config.model.latent_cache=False (encoding in every step)."
    ) from e
  encode_fn = jax.jit(lambda v, x: moments(v, x, frozen))
  variables = jax.tree.map(jnp.asarray, frozen.variables)
  log.info(
    f"Writing the latent cache of {dataset.info.name} ({n} examples, {flips}x, {need / 2**20:.0f} MiB) to {path} (once)."
  )
  bar = tqdm(
    total=-(-n // CACHE_BATCH),
    desc="latent cache",
    unit="batch",
    file=sys.stderr,
    mininterval=1.0 if os.isatty(2) else 30.0,
    dynamic_ncols=True,
  )
  labels = np.zeros(n, np.int32)
  try:
    for start in range(0, n, CACHE_BATCH):
      stop = min(start + CACHE_BATCH, n)
      images, labels[start:stop] = dataset.images_in_order(start, stop)
      pad = CACHE_BATCH - (stop - start)  # one compiled shape: the last batch padded
      if pad:
        images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
      out[0, start:stop] = np.asarray(encode_fn(variables, images))[: stop - start]
      if flips == 2:
        out[1, start:stop] = np.asarray(encode_fn(variables, images[:, :, ::-1]))[: stop - start]
      bar.update(1)
    out.flush()
    del out
    tmp_labels = f"{labels_path(path)}.tmp{os.getpid()}.npy"
    np.save(tmp_labels, labels)
    os.replace(tmp_labels, labels_path(path))
    os.replace(tmp, path)
  finally:
    bar.close()
    for leftover in (tmp, f"{labels_path(path)}.tmp{os.getpid()}.npy"):
      if os.path.exists(leftover):
        os.remove(leftover)


class CachedLatents:
  """A training dataset whose batches carry each example's cached posterior moments in place of
  its image: {"moments": f32[B, h, w, 2L], "label": i32[B]}, the same examples and mirror
  images in the same order as the image batches (ImageDataset.batch_rows)."""

  def __init__(self, dataset, cache: np.ndarray, labels: np.ndarray):
    self.dataset, self.cache, self.labels = dataset, cache, labels
    self.info, self.num_examples = dataset.info, dataset.num_examples

  def batch(self, step: int, global_batch: int, seed: int, process_index: int = 0, process_count: int = 1):
    indices, mirror = self.dataset.batch_rows(step, global_batch, seed, process_index, process_count)
    flip = np.zeros(len(indices), np.intp) if mirror is None else mirror.astype(np.intp)
    return {MOMENTS: np.asarray(self.cache[flip, indices]), "label": self.labels[indices]}

  def eval_batches(self, *args, **kwargs):
    return self.dataset.eval_batches(*args, **kwargs)


def cached(dataset, data_cfg, split: str, frozen: Frozen) -> CachedLatents:
  """`dataset` reading the latent cache of (data_cfg, split, frozen), written first if absent."""
  if not hasattr(dataset, "batch_rows"):
    raise errors.ConfigError(
      f"config.model.latent_cache caches image datasets; {data_cfg.name!r} gives no images to encode."
    )
  path = cache_path(data_cfg, split, frozen)
  if not os.path.exists(path):
    write_cache(dataset, frozen, path)
  else:
    log.info(f"Reading the latent cache {path}.")
  cache, labels = np.load(path, mmap_mode="r"), np.load(labels_path(path))
  expected = (2 if dataset.flip else 1, dataset.num_examples, *latent_shape(frozen, tuple(dataset.info.shape)))
  if cache.shape[:-1] != expected[:-1] or cache.shape[-1] != 2 * expected[-1] or labels.shape != (expected[1],):
    raise errors.ConfigError(
      f"The latent cache {path} holds {cache.shape}, not the moments of this dataset's {dataset.num_examples} "
      f"examples; delete it (it is rewritten on the next run)."
    )
  return CachedLatents(dataset, cache, labels)
