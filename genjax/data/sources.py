"""Where examples come from: scikit-learn's digits, TFDS datasets, and datasets built from them.

Image datasets become an `ImageSource` (uint8 images, int32 labels, random access). A TFDS
split whose uint8 images fit under `data.in_memory_max_mb` is decoded once into memory; the
decoded arrays are cached next to the prepared dataset (`genjax-cache-<split>.npz`) so later
runs start in a fraction of a second. Larger splits are read by index from the array_record
data source for each batch.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
import re
from typing import Optional, Tuple

import numpy as np

from genjax.config import ConfigError
from genjax.data import portable, registry, tfds_io
from genjax.data.datasets import ArraySource, ImageSource

# scikit-learn's digits (1797 8x8 images, 16 gray levels) in its stored order: the first 1500
# are the training split, the last 297 the test split. The stored order is by writer block, so
# the test writers are unseen in training; each class has 27 to 33 test examples.
DIGITS_NUM_TRAIN = 1500


def digits(split: str) -> ArraySource:
  """scikit-learn's bundled 8x8 digits (no download): uint8[N, 8, 8, 1] in 0..16, 10 classes."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  bunch = load_digits()
  images = bunch.images.astype(np.uint8)[..., None]
  labels = bunch.target.astype(np.int32)
  parts = {"train": slice(0, DIGITS_NUM_TRAIN), "test": slice(DIGITS_NUM_TRAIN, None), "all": slice(None)}
  if split not in parts:
    raise ConfigError(f"digits has splits {sorted(parts)}, not {split!r}.")
  return ArraySource(images[parts[split]], labels[parts[split]], max_value=16)


class TfdsSource:
  """An ImageSource reading a TFDS array_record data source by index for every batch."""

  def __init__(self, data_source, shape, has_label: bool, scale: int = 1):
    self.data_source = data_source
    self.num_examples = len(data_source)
    self.shape = tuple(shape)
    self.max_value = 255
    self._has_label = has_label
    self._scale = scale  # binarized_mnist stores 0/1: scaled to 0/255 like every other image

  def get(self, indices):
    examples = self.data_source.__getitems__([int(i) for i in indices])
    images = np.stack([np.asarray(e["image"]) for e in examples]).astype(np.uint8)
    if self._scale != 1:
      images *= np.uint8(self._scale)
    labels = np.array([e["label"] if self._has_label else 0 for e in examples], dtype=np.int32)
    return images.reshape((len(examples), *self.shape)), labels


def _split_files_exist(builder, split: str) -> bool:
  base = split.split("[")[0]
  return bool(glob.glob(os.path.join(str(builder.data_dir), f"{builder.name}-{base}.array_record*")))


def _cache_path(builder, split: str) -> str:
  safe = re.sub(r"[^A-Za-z0-9_-]", "_", split) + "-" + hashlib.sha1(split.encode()).hexdigest()[:8]
  return os.path.join(str(builder.data_dir), f"genjax-cache-{safe}.npz")


def _decode_all(source: TfdsSource, builder, split: str) -> ArraySource:
  """Decodes a whole split into memory once, through an on-disk cache when one can be written."""
  path = _cache_path(builder, split)
  if os.path.isfile(path):
    with np.load(path) as cached:
      if len(cached["labels"]) == source.num_examples:
        return ArraySource(cached["images"], cached["labels"])
  chunks = [source.get(np.arange(i, min(i + 4096, source.num_examples))) for i in range(0, source.num_examples, 4096)]
  images = np.concatenate([c[0] for c in chunks])
  labels = np.concatenate([c[1] for c in chunks])
  # Only real prepared splits are cached (not mocked ones), and only where we may write.
  if _split_files_exist(builder, split) and os.access(str(builder.data_dir), os.W_OK):
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    np.savez(tmp, images=images, labels=labels)
    os.replace(tmp, path)
  return ArraySource(images, labels)


def _data_source(builder, split: str):
  try:
    return builder.as_data_source(split=split)
  except (KeyError, ValueError) as e:
    splits = sorted(builder.info.splits) if isinstance(builder.info.splits, dict) else []
    raise ConfigError(
      f"{builder.name} has no split {split!r}: choose one of {splits} "
      f"(TFDS slicing such as 'train[:90%]' also works). TFDS said: {e}"
    ) from e


def tfds_images(name: str, split: str, data_cfg) -> Tuple[ImageSource, Optional[int]]:
  """The image source of a TFDS split and its number of classes (None when unlabelled): from a
  portable export (genjax.data.portable) when the data_dir holds one, else from TFDS."""
  folder = portable.exported_dir(name, data_cfg)
  if folder is not None:
    images, labels, num_classes = portable.images(folder, split)
    return ArraySource(images, labels), num_classes
  entry = registry.get(name)
  builder = tfds_io.open_builder(entry.tfds_name, data_cfg)
  features = builder.info.features
  has_label = "label" in features
  num_classes = features["label"].num_classes if has_label else None
  shape = tuple(features["image"].shape)
  source = TfdsSource(_data_source(builder, split), shape, has_label, scale=entry.pixel_scale)
  size_mb = source.num_examples * math.prod(shape) / 2**20
  if size_mb <= data_cfg.in_memory_max_mb:
    return _decode_all(source, builder, split), num_classes
  return source, num_classes


# ----------------------------------------------------------------------------------------------
# Any TFDS dataset: data.name="tfds:NAME[/CONFIG][:VERSION]"
# ----------------------------------------------------------------------------------------------


def _feature_key(features, kind, preferred: str) -> Optional[str]:
  """The top-level feature of type `kind`, `preferred` when that is one, else the first."""
  keys = [k for k, f in features.items() if isinstance(f, kind)]
  return preferred if preferred in keys else (keys[0] if keys else None)


class AnyTfdsImageSource:
  """An ImageSource over any TFDS image feature: images center-cropped and resized to
  data.image_size x data.image_size x data.channels (genjax.data.files.fit_array), labels from a
  ClassLabel feature ("label" preferred) or 0."""

  def __init__(
    self, data_source, image_key: str, label_key: Optional[str], size: int, channels: int, crop: Optional[int] = None
  ):
    self.data_source = data_source
    self.crop = crop
    self.num_examples = len(data_source)
    self.shape = (size, size, channels)
    self.max_value = 255
    self._image_key, self._label_key = image_key, label_key

  def get(self, indices):
    from genjax.data import files  # pylint: disable=g-import-not-at-top

    examples = self.data_source.__getitems__([int(i) for i in indices])
    images = [
      files.fit_array(np.asarray(e[self._image_key]), self.shape[0], self.shape[2], self.crop) for e in examples
    ]
    labels = [int(e[self._label_key]) if self._label_key else 0 for e in examples]
    return np.stack(images).reshape(len(examples), *self.shape), np.array(labels, dtype=np.int32)


def any_tfds_features(builder, want: str):
  """(feature key of kind `want` ("image" or "text"), label key or None, num_classes or None)."""
  tfds = tfds_io.import_tfds()
  features = builder.info.features
  kind = tfds.features.Image if want == "image" else tfds.features.Text
  key = _feature_key(features, kind, want)
  if key is None:
    described = ", ".join(f"{k} ({type(f).__name__})" for k, f in features.items())
    raise ConfigError(
      f"TFDS dataset {builder.name!r} has no top-level {kind.__name__} feature for genjax to read "
      f"(its features: {described}). data.name='tfds:...' reads datasets with an Image or a Text feature."
    )
  label_key = _feature_key(features, tfds.features.ClassLabel, "label")
  num_classes = features[label_key].num_classes if label_key else None
  return key, label_key, num_classes


def any_tfds_is_text(builder) -> bool:
  """Whether `data.name="tfds:..."` reads text: the dataset has a Text feature and no Image."""
  tfds = tfds_io.import_tfds()
  features = builder.info.features
  has = lambda kind: any(isinstance(f, kind) for f in features.values())
  return has(tfds.features.Text) and not has(tfds.features.Image)


def any_tfds_images(builder, split: str, data_cfg) -> Tuple[ImageSource, Optional[int]]:
  """The image source of `split` of any prepared TFDS dataset and its number of classes.

  Decoded whole into memory when the resized split fits in data.in_memory_max_mb, else per batch.
  """
  image_key, label_key, num_classes = any_tfds_features(builder, "image")
  source = AnyTfdsImageSource(
    _data_source(builder, split), image_key, label_key, data_cfg.image_size, data_cfg.channels, data_cfg.crop_size
  )
  if source.num_examples and source.num_examples * math.prod(source.shape) / 2**20 <= data_cfg.in_memory_max_mb:
    chunks = [source.get(np.arange(i, min(i + 4096, source.num_examples))) for i in range(0, source.num_examples, 4096)]
    return ArraySource(np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])), num_classes
  return source, num_classes


def any_tfds_text(builder, split: str, tokenizer: str) -> Tuple[str, str]:
  """(text of `split`, corpus for the tokenizer) of any TFDS dataset with a Text feature: the
  examples' texts joined by newlines; the corpus is every split's text for the char tokenizer
  (so evaluation text has no unknown characters), the split's own text for bytes."""
  key, _, _ = any_tfds_features(builder, "text")

  def text_of(part):
    source = _data_source(builder, part)
    return "\n".join(_as_text(source[i][key]) for i in range(len(source)))

  text = text_of(split)
  if tokenizer != "char":
    return text, text
  parts = sorted(builder.info.splits) or [split]  # (a mocked builder lists no splits)
  return text, "\n".join(text if part == split else text_of(part) for part in parts)


# ----------------------------------------------------------------------------------------------
# Stacked MNIST
# ----------------------------------------------------------------------------------------------

STACKED_MNIST_SEED = 1000


class StackedMnistSource:
  """Stacked MNIST (Metz et al. 2017, "Unrolled GANs"): three MNIST digits as the three channels.

  Example k of a split of N MNIST digits takes digit k as channel 0, digit perm1[k] as channel 1
  and digit perm2[k] as channel 2, where perm_c = numpy PCG64(SeedSequence([1000, c]))
  .permutation(N) for c = 1, 2. So the construction is deterministic, has N examples per split
  (60000 train, 10000 test) and uses each MNIST digit once per channel. The label
  100 * d0 + 10 * d1 + d2 of the three digit classes names one of 1000 modes.
  """

  def __init__(self, mnist: ImageSource):
    n = mnist.num_examples
    permutations = [
      np.random.Generator(np.random.PCG64(np.random.SeedSequence([STACKED_MNIST_SEED, c]))).permutation(n)
      for c in (1, 2)
    ]
    self.digit_indices_Nx3 = np.stack([np.arange(n), *permutations], axis=1)
    self.mnist = mnist
    self.num_examples = n
    self.shape = (*mnist.shape[:2], 3)
    self.max_value = mnist.max_value

  def get(self, indices):
    digits_nx3 = self.digit_indices_Nx3[np.asarray(indices)]
    images, labels = self.mnist.get(digits_nx3.reshape(-1))
    images_nx3xHxW = images[..., 0].reshape(len(digits_nx3), 3, *self.shape[:2])
    labels_nx3 = labels.reshape(-1, 3)
    return np.moveaxis(images_nx3xHxW, 1, -1), (labels_nx3 @ np.array([100, 10, 1])).astype(np.int32)


# ----------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------


def tfds_text(name: str, split: str, data_cfg) -> Tuple[str, str]:
  """(text of `split`, whole corpus) of a TFDS text dataset with train/validation/test splits
  (its stored splits in genjax.data.registry; the corpus is them joined in that order).

  For tiny_shakespeare TFDS splits input.txt (1,115,394 characters) 90/5/5 at character
  int(0.9 n) and half-way through the rest, so train + validation + test concatenate back to
  input.txt. nanoGPT's data/shakespeare_char/prepare.py uses the first 90% for training and
  the last 10% for validation: `nanogpt_train` is therefore TFDS's train split and `nanogpt_val`
  its validation and test splits together (compare validation loss with nanoGPT there).
  """
  entry = registry.get(name)
  if split not in entry.split_names():
    raise ConfigError(f"{name} has splits {list(entry.split_names())}, not {split!r}.")
  folder = portable.exported_dir(name, data_cfg)
  if folder is not None:
    texts = portable.texts(folder)
  else:
    builder = tfds_io.open_builder(entry.tfds_name, data_cfg)
    texts = {part: tfds_split_text(builder, part) for part in entry.stored_splits()}
  corpus = "".join(texts[part] for part in entry.stored_splits())
  cut = int(len(corpus) * 0.9)
  texts.update(nanogpt_train=corpus[:cut], nanogpt_val=corpus[cut:], all=corpus)
  return texts[split], corpus


def tfds_split_text(builder, split: str) -> str:
  """The text of a prepared TFDS text split (its examples joined)."""
  source = _data_source(builder, split)
  return "".join(_as_text(source[i]["text"]) for i in range(len(source)))


def _as_text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)
