"""Datasets that hand out batches as a pure function of (seed, step).

Training order. The loop asks for `batch(step, global_batch, seed, process_index,
process_count)`. Example i of the global batch of `step` is global example g = step * B + i; it
belongs to epoch g // N at position g % N of a permutation of the N examples seeded by
(seed, epoch). Nothing depends on what was asked before, so a run resumed at step s reads
exactly the batches an uninterrupted run would, and every example appears once per epoch.

Processes. Process p of P reads only its contiguous share [p*B/P, (p+1)*B/P) of the global
batch. Random augmentation (dynamic binarization, horizontal flips) is defined for the global
batch by a numpy PCG64 generator seeded by (seed, step): a share jumps the generator ahead to
its first example (`PCG64.advance`) and draws only its own values, so results equal slicing the
global draw and do not depend on the number of processes.

Evaluation. `eval_batches` walks the split in its stored order; the last batch is padded (with
copies of example 0) and "mask" is 1 for real examples and 0 for padding. Dynamic binarization of
evaluation data is a fixed function of the example index (a fixed binarized evaluation set).

Text. Training batches are windows of block_size + 1 tokens at offsets drawn (for the global
batch) from a generator seeded by (seed, step); evaluation uses consecutive non-overlapping
windows, window w starting at token w * block_size.
"""

from __future__ import annotations

import collections
import math
from typing import Dict, Iterator, Optional, Protocol, Tuple

import numpy as np

from genjax import errors
from genjax.config import ConfigError
from genjax.data.info import DataInfo
from genjax.data.tokenizers import Tokenizer

Batch = Dict[str, np.ndarray]

# Independent random streams, the last word of each generator's seed.
_ORDER, _BINARIZE, _FLIP, _TEXT_OFFSETS, _EVAL_BINARIZE = range(5)


def process_share(global_batch: int, process_index: int, process_count: int) -> Tuple[int, int]:
  """The [lo, hi) rows of the global batch that process `process_index` reads."""
  if process_count <= 0 or not 0 <= process_index < process_count:
    raise errors.ConfigError(f"process_index={process_index} must lie in [0, process_count={process_count}).")
  if global_batch <= 0 or global_batch % process_count:
    raise errors.ConfigError(
      f"The global batch {global_batch} must be a positive multiple of the "
      f"{process_count} processes (set train.batch_size / eval.batch_size accordingly)."
    )
  per_process = global_batch // process_count
  return process_index * per_process, (process_index + 1) * per_process


def _check_seed(seed: int) -> None:
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise errors.ConfigError(f"The data seed must be a non-negative integer, got {seed!r}.")


def uniform_rows(entropy: Tuple[int, ...], start: int, count: int, row_shape: Tuple[int, ...]) -> np.ndarray:
  """Rows [start, start + count) of a float64[∞, *row_shape] uniform stream seeded by `entropy`.

  Each float64 consumes exactly one 64-bit PCG64 output, so advancing the generator by
  start * prod(row_shape) outputs skips the rows before `start` without drawing them.
  """
  bit_generator = np.random.PCG64(np.random.SeedSequence(list(entropy)))
  bit_generator.advance(start * math.prod(row_shape))
  return np.random.Generator(bit_generator).random((count, *row_shape))


class EpochOrder:
  """Global example g -> dataset index: position g % N of the permutation of epoch g // N."""

  def __init__(self, num_examples: int):
    self.num_examples = num_examples
    self._permutations = collections.OrderedDict()  # (seed, epoch) -> int64[N]; at most two kept

  def permutation(self, seed: int, epoch: int) -> np.ndarray:
    key = (int(seed), int(epoch))
    if key not in self._permutations:
      rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([key[0], key[1], _ORDER])))
      self._permutations[key] = rng.permutation(self.num_examples)
      while len(self._permutations) > 2:  # a batch spans at most two epochs when B <= N
        self._permutations.popitem(last=False)
    return self._permutations[key]

  def indices(self, seed: int, start: int, count: int) -> np.ndarray:
    """Dataset indices int64[count] of global examples start, ..., start + count - 1."""
    g = start + np.arange(count, dtype=np.int64)
    epoch, position = np.divmod(g, self.num_examples)
    out = np.empty(count, dtype=np.int64)
    for e in np.unique(epoch):
      rows = epoch == e
      out[rows] = self.permutation(seed, e)[position[rows]]
    return out


class ImageSource(Protocol):
  """Random access to uint8 images (values 0..max_value) and int32 labels."""

  num_examples: int
  shape: Tuple[int, int, int]
  max_value: int  # 255 for TFDS images, 16 for the 8x8 digits

  def get(self, indices: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """uint8[n, H, W, C] images and int32[n] labels of dataset indices int[n]."""


class ArraySource:
  """An ImageSource held in memory."""

  def __init__(self, images_NxHxWxC: np.ndarray, labels_N: np.ndarray, max_value: int = 255):
    if images_NxHxWxC.ndim != 4 or len(images_NxHxWxC) != len(labels_N):
      raise errors.ConfigError(
        f"Expected images [N, H, W, C] and labels [N], got {images_NxHxWxC.shape} and {labels_N.shape}."
      )
    self.images = np.ascontiguousarray(images_NxHxWxC, dtype=np.uint8)
    self.labels = np.asarray(labels_N, dtype=np.int32)
    self.num_examples = len(self.labels)
    self.shape = tuple(self.images.shape[1:])
    self.max_value = max_value

  def get(self, indices):
    return self.images[indices], self.labels[indices]


class ImageDataset:
  """Image batches {"image": f32[B, H, W, C] in [-1, 1], "label": i32[B]} (+ "mask" for eval).

  binarize: "none" scales pixel x to x / (max_value / 2) - 1; "threshold" maps x / max_value > 0.5
  to 1 and the rest to -1; "dynamic" draws Bernoulli(x / max_value) every time an example is read
  (Salakhutdinov & Murray's dynamically binarized MNIST), also mapped to {-1, 1}.
  flip: mirrors each training image left-right with probability 1/2 (never at evaluation).
  """

  def __init__(self, info: DataInfo, source: ImageSource, binarize: str = "none", flip: bool = False):
    if binarize not in ("none", "threshold", "dynamic"):
      raise errors.ConfigError(f"data.binarize={binarize!r}: expected 'none', 'threshold' or 'dynamic'.")
    if source.num_examples == 0:
      raise ConfigError(f"Dataset {info.name!r} has no examples in this split.")
    self.info = info
    self.source = source
    self.binarize = binarize
    self.flip = flip
    self.num_examples = source.num_examples
    self._order = EpochOrder(source.num_examples)

  def _images(self, images_u8: np.ndarray, uniform_fn) -> np.ndarray:
    """float32 images in [-1, 1]; `uniform_fn(row_shape)` gives the rows' uniforms."""
    top = float(self.source.max_value)
    if self.binarize == "none":
      return images_u8.astype(np.float32) / np.float32(top / 2) - np.float32(1)
    if self.binarize == "threshold":
      on = images_u8.astype(np.float32) > top / 2
    else:
      on = uniform_fn(images_u8.shape[1:]) * top < images_u8
    return np.where(on, np.float32(1), np.float32(-1))

  def batch_rows(
    self, step: int, global_batch: int, seed: int, process_index: int = 0, process_count: int = 1
  ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(dataset indices int[n], which rows are mirrored bool[n] or None without flip) of this
    process's share of the training batch of `step`: what `batch` reads, for whoever stores
    something per example (a latent cache)."""
    _check_seed(seed)
    lo, hi = process_share(global_batch, process_index, process_count)
    indices = self._order.indices(seed, step * global_batch + lo, hi - lo)
    mirror = uniform_rows((seed, step, _FLIP), lo, hi - lo, ()) < 0.5 if self.flip else None
    return indices, mirror

  def batch(self, step: int, global_batch: int, seed: int, process_index: int = 0, process_count: int = 1) -> Batch:
    """This process's share of the training batch of `step` (a pure function of its arguments)."""
    indices, mirror = self.batch_rows(step, global_batch, seed, process_index, process_count)
    lo, hi = process_share(global_batch, process_index, process_count)
    images_u8, labels = self.source.get(indices)
    image = self._images(images_u8, lambda shape: uniform_rows((seed, step, _BINARIZE), lo, hi - lo, shape))
    if mirror is not None:
      image[mirror] = image[mirror][:, :, ::-1]
    return {"image": image, "label": labels.astype(np.int32)}

  def images_in_order(self, start: int, stop: int) -> Tuple[np.ndarray, np.ndarray]:
    """(f32[n, H, W, C] in [-1, 1], i32[n]) of examples start..stop-1 in stored order, as
    training reads them before any flip; a dynamically binarized dataset has no fixed images."""
    if self.binarize == "dynamic":
      raise ConfigError(
        "data.binarize='dynamic' draws new pixels each time an example is read, so its images cannot be "
        "stored once; use 'threshold' or 'none'."
      )
    images_u8, labels = self.source.get(np.arange(start, stop))
    return self._images(images_u8, None), labels.astype(np.int32)

  def eval_batches(
    self, global_batch: int, num_batches: Optional[int] = None, process_index: int = 0, process_count: int = 1
  ) -> Iterator[Batch]:
    """Batches over the split in stored order (all of it, or the first `num_batches`)."""
    lo, hi = process_share(global_batch, process_index, process_count)
    for g, real in eval_indices(self.num_examples, global_batch, num_batches, lo, hi):
      images_u8, labels = self.source.get(np.where(real, g, 0))
      start = int(g[0])
      image = self._images(images_u8, lambda shape, start=start: uniform_rows((_EVAL_BINARIZE,), start, hi - lo, shape))
      yield {"image": image, "label": labels.astype(np.int32), "mask": real.astype(np.float32)}


def eval_indices(num_examples: int, global_batch: int, num_batches: Optional[int], lo: int, hi: int):
  """For each evaluation batch, in order: (global indices i64[hi-lo] of this process's rows,
  bool[hi-lo] real). The last batch runs past the split; its extra rows are marked not real."""
  total = math.ceil(num_examples / global_batch)
  if num_batches is not None:
    total = min(total, num_batches)
  for j in range(total):
    g = j * global_batch + np.arange(lo, hi, dtype=np.int64)
    yield g, g < num_examples


def first_examples(batches, limit: Optional[int]):
  """Evaluation batches with every real example after the first `limit` masked out (a batch
  without "mask" counts as all real), and no batch after the one that reaches it; all of them
  when limit is None."""
  if limit is None:
    yield from batches
    return
  seen = 0
  for batch in batches:
    mask = np.asarray(batch["mask"]) if "mask" in batch else np.ones(len(next(iter(batch.values()))), np.float32)
    keep = mask * (np.cumsum(mask) <= limit - seen)
    yield {**batch, "mask": keep.astype(mask.dtype)}
    seen += int(keep.sum())
    if seen >= limit:
      return


class TextDataset:
  """Token windows {"tokens": i32[B, block_size + 1]} (+ "mask" for eval) from one token array."""

  def __init__(self, info: DataInfo, tokens: np.ndarray, tokenizer: Tokenizer, block_size: int):
    if len(tokens) < block_size + 1:
      raise ConfigError(
        f"Split of {info.name!r} has {len(tokens)} tokens, fewer than block_size + 1 = "
        f"{block_size + 1}: lower data.block_size."
      )
    self.info = info
    self.tokens = np.asarray(tokens, dtype=np.int32)
    self.tokenizer = tokenizer
    self.block_size = block_size
    self.num_tokens = len(self.tokens)
    # Evaluation windows: non-overlapping inputs, each with its next token as the last target.
    self.num_examples = (self.num_tokens - 1) // block_size
    self._span = np.arange(block_size + 1, dtype=np.int64)

  def _windows(self, offsets: np.ndarray) -> np.ndarray:
    return self.tokens[offsets[:, None] + self._span]

  def batch(self, step: int, global_batch: int, seed: int, process_index: int = 0, process_count: int = 1) -> Batch:
    """This process's share of random windows for `step` (a pure function of its arguments)."""
    _check_seed(seed)
    lo, hi = process_share(global_batch, process_index, process_count)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, step, _TEXT_OFFSETS])))
    offsets = rng.integers(0, self.num_tokens - self.block_size, size=global_batch)[lo:hi]
    return {"tokens": self._windows(offsets)}

  def eval_batches(
    self, global_batch: int, num_batches: Optional[int] = None, process_index: int = 0, process_count: int = 1
  ) -> Iterator[Batch]:
    """Consecutive non-overlapping windows in order; the last batch padded and masked."""
    lo, hi = process_share(global_batch, process_index, process_count)
    for w, real in eval_indices(self.num_examples, global_batch, num_batches, lo, hi):
      yield {"tokens": self._windows(np.where(real, w, 0) * self.block_size), "mask": real.astype(np.float32)}
