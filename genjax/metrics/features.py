"""Feature networks behind one interface, found by name.

    net = features.get("inception")             # FID's Inception-v3: 2048 features, 1008 logits
    net = features.get("classifier_mnist")      # genjax's MNIST classifier: 128 features, 10 logits
    features_NxD, logits_NxK = net.apply(images_NxHxWxC)   # images in [-1, 1], numpy in and out

`classifier_<dataset>` loads the checkpoint of a run of the classifier family
(experiments/classifier_mnist.py) from, in order: the `classifier_dir` option,
$GENJAX_CLASSIFIER_<DATASET> (e.g. GENJAX_CLASSIFIER_MNIST), or $GENJAX_HOME/classifiers/<dataset>
($GENJAX_HOME defaults to ~/.genjax). New networks register with `@register("name")`.
"""

import dataclasses
import hashlib
import os
from typing import Callable, Dict, Optional, Tuple

import jax
import numpy as np

from genjax import errors, paths
from genjax.data import registry

Apply = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class FeatureNet:
  name: str
  dim: int  # feature dimension D
  num_classes: int  # logits K (Inception: 1008; classifiers: the dataset's classes)
  apply: Apply  # images f32[N,H,W,C] in [-1, 1] (quantized to 8 bits) -> (features f32[N,D], logits f32[N,K])
  fingerprint: str  # changes when the weights change (keys the reference-statistics cache)


class FeatureNetError(errors.ConfigError):
  """A feature network that cannot be built; the message says what to do."""


_REGISTRY: Dict[str, Callable[..., FeatureNet]] = {}


def register(name: str):
  def wrap(factory):
    _REGISTRY[name] = factory
    return factory

  return wrap


def names():
  return sorted(_REGISTRY) + ["classifier_<dataset>"]


def get(name: str, **options) -> FeatureNet:
  """The feature network `name` ("inception", "classifier_mnist", ...). Options go to its
  factory: inception takes `weights` (a path), classifiers `classifier_dir`; both `batch_size`."""
  if name in _REGISTRY:
    return _REGISTRY[name](**options)
  if name.startswith("classifier_") and len(name) > len("classifier_"):
    return classifier_net(name[len("classifier_") :], **options)
  raise FeatureNetError(f"Unknown feature network {name!r}; known: {', '.join(names())}.")


def default_for(dataset: str) -> str:
  """The feature network a dataset's samples are compared in by default: the classifier of its
  registry entry's feature domain (genjax.data.registry), else Inception."""
  entry = registry.find(dataset)
  domain = entry.feature_domain if entry is not None else None
  return f"classifier_{domain}" if domain else "inception"


def quantize_uint8(images: np.ndarray) -> np.ndarray:
  """Images in [-1, 1] as the 8-bit pictures the reference pipelines read (pytorch-fid and TTUR on
  saved PNGs, EDM's fid.py, clean-fid): u8 = floor(255 (x + 1) / 2 + 0.5) clipped to 0..255, as
  torchvision's save_image rounds, then back to [-1, 1] (2 u8 / 255 - 1). Real data, already 8-bit,
  passes unchanged."""
  u8 = np.clip(np.floor((np.asarray(images, np.float32) + 1.0) * 127.5 + 0.5), 0, 255)
  return (u8 / 127.5 - 1.0).astype(np.float32)


def batched(fn: Callable, batch_size: int) -> Apply:
  """Runs a jitted fn(images) -> (features, logits) over fixed-size chunks (the last one padded,
  so one compilation serves any N), returning numpy arrays. Images are quantized to 8 bits first
  (`quantize_uint8`), so samples are measured as the pictures a reference pipeline would read."""
  jitted = jax.jit(fn)

  def apply(images: np.ndarray):
    images = quantize_uint8(images)
    n = len(images)
    outputs = []
    for start in range(0, n, batch_size):
      chunk = images[start : start + batch_size]
      pad = batch_size - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
      features, logits = jax.device_get(jitted(chunk))
      outputs.append((features[: batch_size - pad], logits[: batch_size - pad]))
    if not outputs:
      raise errors.ConfigError("No images to compute features of.")
    return (np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs]))

  return apply


def _fingerprint(variables) -> str:
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(variables):
    digest.update(np.asarray(leaf).tobytes()[:4096])
  return digest.hexdigest()[:12]


@register("inception")
def inception_net(weights: Optional[str] = None, batch_size: int = 50, **unused) -> FeatureNet:
  from genjax.metrics import inception

  variables = inception.load_fid_weights(weights)
  module = inception.FIDInceptionV3()
  return FeatureNet(
    "inception",
    inception.FEATURE_DIM,
    inception.NUM_LOGITS,
    batched(lambda x: module.apply(variables, x), batch_size),
    f"inception-{inception.WEIGHTS_SHA256_PREFIX}",
  )


def classifier_workdir(dataset: str, classifier_dir: Optional[str] = None) -> str:
  """Where the classifier of `dataset` was trained (see the module docstring for the order)."""
  env = f"GENJAX_CLASSIFIER_{dataset.upper()}"
  return classifier_dir or os.environ.get(env) or paths.join(paths.genjax_home(), "classifiers", dataset)


def classifier_net(dataset: str, classifier_dir: Optional[str] = None, batch_size: int = 500, **unused) -> FeatureNet:
  from genjax.families import classifier

  workdir = classifier_workdir(dataset, classifier_dir)
  if not paths.exists(paths.join(workdir, "config.json")):
    raise FeatureNetError(
      f"No trained {dataset} classifier at {workdir}. Train it once with `python -m genjax.train "
      f"--config experiments/classifier_{dataset}.py --workdir {workdir}` (or set "
      f"GENJAX_CLASSIFIER_{dataset.upper()} / GENJAX_HOME to where one was trained)."
    )
  from genjax.core import checkpoint
  from genjax.trainer import workdir as workdir_lib

  try:
    exp, _, state, info = workdir_lib.restore(workdir)
  except (FileNotFoundError, checkpoint.CheckpointError) as e:
    raise FeatureNetError(
      f"The {dataset} classifier at {workdir} cannot be read ({e}); is its training "
      "still running or was it stopped before the first checkpoint?"
    ) from e
  if exp.family != "classifier":
    raise FeatureNetError(f"{workdir} holds a {exp.family} run, not a classifier.")
  model = classifier.make_model(exp.model, info, exp.train.compute_dtype)
  variables = state.variables()

  def features_and_logits(images):
    if images.shape[1:] != info.shape:
      raise FeatureNetError(f"The {dataset} classifier takes images of shape {info.shape}, got {images.shape[1:]}.")
    logits, features = model.apply(variables, images, train=False)
    return features, logits

  return FeatureNet(
    f"classifier_{dataset}",
    exp.model.feature_dim,
    info.num_classes,
    batched(features_and_logits, batch_size),
    f"classifier_{dataset}-{int(state.step)}-{_fingerprint(variables)}",
  )
