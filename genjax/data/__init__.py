"""Datasets for genjax: `load(exp.data, split) -> Dataset`.

A `Dataset` has `.info` (a `DataInfo`), `.num_examples`, and two ways to read it:

- `.batch(step, global_batch, seed, process_index=0, process_count=1)`: this process's share of
  the training batch of `step`, a pure function of its arguments (see `genjax.data.datasets`),
  so a resumed run reads the same batches as an uninterrupted one.
- `.eval_batches(global_batch, num_batches=None, process_index=0, process_count=1)`: the split
  in stored order, the last batch padded, with "mask" (1 real, 0 padding).

Batches are dicts of numpy arrays: images {"image": f32[B, H, W, C] in [-1, 1], "label": i32[B]},
text {"tokens": i32[B, block_size + 1]}. Datasets:

| name | kind | shape | classes | splits |
| --- | --- | --- | --- | --- |
| digits (default, no download) | image | 8x8x1 | 10 | train (1500), test (297), all |
| mnist, fashion_mnist | image | 28x28x1 | 10 | train (60000), test (10000) |
| binarized_mnist | image, binary | 28x28x1 | none (label 0) | train (50000), validation, test (10000 each) |
| stacked_mnist (built from mnist) | image | 28x28x3 | 1000 | train (60000), test (10000) |
| cifar10 | image | 32x32x3 | 10 | train (50000), test (10000) |
| tiny_shakespeare | text | block_size | char 65 / byte 256 / bpe | train, validation, test, nanogpt_train, nanogpt_val, all |
| folder (your PNG/JPEG files under data.path) | image | image_size^2 x channels | sub-folders, or none | train, test, all |
| text (your text file or folder data.path) | text | block_size | char / byte / bpe | train, test, all |
| tfds:NAME[/CONFIG][:VERSION] (any prepared TFDS dataset) | image or text | image_size^2 x channels / block_size | its ClassLabel, or none | its splits, sliced |

The built-in datasets (the rows from digits to tiny_shakespeare) are the entries of
`genjax.data.registry`: the one table that load, describe, prepare, export and the metrics read.

TFDS datasets are read from prepared array_record files without TensorFlow; see
`genjax.data.tfds_io` for where raw files go and `python -m genjax.data.prepare` to prepare.
Your own images and text are read by `genjax.data.files` (splits, classes, streaming there).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Union

from genjax.data import files, registry, sources, tfds_io, tokenizers
from genjax.data.datasets import ImageDataset, TextDataset
from genjax.data.info import DataInfo
from genjax.data.registry import OWN_DATASETS
from genjax.data.tfds_io import ChecksumMismatchError, DatasetNotPreparedError

Dataset = Union[ImageDataset, TextDataset]

__all__ = [
  "load",
  "describe",
  "pipeline_throughput",
  "SHAPES",
  "Dataset",
  "ImageDataset",
  "TextDataset",
  "DataInfo",
  "DatasetNotPreparedError",
  "ChecksumMismatchError",
  "DATASETS",
  "tokenizers",
]


def load(data_cfg, split: str) -> Dataset:
  """The `split` of the dataset `data_cfg` (a genjax.config.Data) describes."""
  name = data_cfg.name
  builder = tfds_io.open_any(name[len("tfds:") :], data_cfg) if name.startswith("tfds:") else None
  entry = registry.find(name)
  is_text = entry is not None and entry.kind == "text"
  if is_text or name == "text" or (builder is not None and sources.any_tfds_is_text(builder)):
    text, corpus = _text(data_cfg, builder, split)
    if data_cfg.tokenizer == "bpe":  # merges learnt on the training split only: evaluation text stays unseen
      train_split = data_cfg.train_split
      corpus = text if split == train_split else _text(data_cfg, builder, train_split)[0]
    tokenizer = tokenizers.make(data_cfg.tokenizer, corpus, data_cfg.bpe_vocab_size)
    info = DataInfo(
      name=name, kind="text", shape=(data_cfg.block_size,), vocab_size=tokenizer.vocab_size, tokenizer=tokenizer
    )
    return TextDataset(info, tokenizer.encode(text), tokenizer, data_cfg.block_size)
  if name == "folder":
    source, num_classes = files.folder_images(data_cfg, split)
  elif builder is not None:
    source, num_classes = sources.any_tfds_images(builder, split, data_cfg)
  else:
    source, num_classes = _builtin_images(registry.get(name), split, data_cfg)  # get: the unknown-dataset error
  binary = (entry is not None and entry.binary) or data_cfg.binarize != "none"
  info = DataInfo(name=name, kind="image", shape=tuple(source.shape), num_classes=num_classes, binary=binary)
  return ImageDataset(info, source, binarize=data_cfg.binarize, flip=data_cfg.flip)


def _builtin_images(entry: registry.Builtin, split: str, data_cfg):
  """(image source, number of classes) of a split of a built-in image dataset, by its origin."""
  if entry.origin == "sklearn_digits":
    return sources.digits(split), entry.num_classes
  if entry.origin == "stacked":
    images, _ = sources.tfds_images(entry.built_from, split, data_cfg)
    return sources.StackedMnistSource(images), entry.num_classes
  return sources.tfds_images(entry.name, split, data_cfg)


def _text(data_cfg, builder, split: str):
  """(text of `split`, the corpus a char vocabulary covers) of a text dataset."""
  if data_cfg.name == "text":
    corpus = files.read_corpus(data_cfg.path)
    return files.text_split(corpus, split, data_cfg.holdout, f"the text {data_cfg.path!r}"), corpus
  if builder is not None:
    return sources.any_tfds_text(builder, split, data_cfg.tokenizer)
  return sources.tfds_text(data_cfg.name, split, data_cfg)


def describe(data_cfg) -> DataInfo:
  """The DataInfo `load(data_cfg, ...)` would give, without reading the dataset (no tokenizer):
  what benchmarks on synthetic batches need. Your own data is listed (and text read) to know it."""
  if data_cfg.name in OWN_DATASETS or data_cfg.name.startswith("tfds:") or data_cfg.tokenizer == "bpe":
    return dataclasses.replace(load(data_cfg, data_cfg.train_split).info, tokenizer=None)
  entry = registry.get(data_cfg.name)  # raises the unknown-dataset error
  if entry.kind == "text":
    vocab = 256 if data_cfg.tokenizer == "byte" else entry.char_vocab
    return DataInfo(name=data_cfg.name, kind="text", shape=(data_cfg.block_size,), vocab_size=vocab)
  return DataInfo(
    name=data_cfg.name,
    kind="image",
    shape=entry.shape,
    num_classes=entry.num_classes,
    binary=entry.binary or data_cfg.binarize != "none",
  )


def pipeline_throughput(dataset: Dataset, global_batch: int, steps: int, seed: int = 0) -> float:
  """Training examples per second that `dataset.batch` delivers on this host (one process).

  The first batch is read before timing starts (it builds the epoch's permutation).
  """
  dataset.batch(0, global_batch, seed)
  start = time.perf_counter()
  for step in range(1, steps + 1):
    dataset.batch(step, global_batch, seed)
  return steps * global_batch / (time.perf_counter() - start)


def _shapes() -> dict:
  """name -> (kind, example shape, classes, binary, vocabulary of the char tokenizer)."""
  return {b.name: (b.kind, b.shape, b.num_classes, b.binary, b.char_vocab) for b in registry.BUILTINS.values()}


# The tables genjax.data held before genjax.data.registry, computed from it whenever they are
# read, so they follow entries added to it later.
_VIEWS = {
  "IMAGE_DATASETS": lambda: registry.names("image"),
  "TEXT_DATASETS": lambda: registry.names("text"),
  "DATASETS": registry.known_names,
  "SHAPES": _shapes,
}


def __getattr__(name: str):
  if name in _VIEWS:
    return _VIEWS[name]()
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
