"""The built-in datasets: one entry each, the one table every part of genjax.data reads.

`genjax.data.load` and `describe`, `python -m genjax.data.prepare` (what to prepare and cache),
`python -m genjax.data.export` (what to export, which splits), the TFDS reader
(`genjax.data.tfds_io.builtin_names`) and the metrics' feature network
(`genjax.metrics.features.default_for`) all look datasets up here, so adding a TFDS dataset is
one `Builtin` entry in `BUILTINS`. Lookups read `BUILTINS` when called, so an entry added to it
later (`BUILTINS[entry.name] = entry`, or a test's monkeypatch) is seen everywhere.

Your own data (`folder`, `text`, read from data.path by genjax.data.files) and any TFDS dataset
by its TFDS name (`tfds:NAME[/CONFIG][:VERSION]`) need no entry.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Dict, NamedTuple, Optional, Tuple

from genjax.config import ConfigError

OWN_DATASETS = ("folder", "text")  # read from data.path (genjax.data.files)
ORIGINS = ("tfds", "sklearn_digits", "stacked")


class Split(NamedTuple):
  name: str
  size: Optional[int] = None  # examples of an image split, characters of a text split; None: not stated
  stored: bool = True  # False: computed from the stored splits on reading (never prepared, cached or exported)


@dataclasses.dataclass(frozen=True)
class Builtin:
  """A built-in dataset: what it holds (known without reading it) and where it comes from.

  origin "tfds": read from the prepared TFDS dataset `tfds_name` (array_record, or a portable
  export of it); "sklearn_digits": scikit-learn's bundled digits (nothing to prepare);
  "stacked": three examples of the built-in dataset `built_from` as the three channels
  (genjax.data.sources.StackedMnistSource), so preparing it prepares `built_from`.
  """

  name: str
  kind: str  # "image" or "text"
  shape: Optional[Tuple[int, ...]]  # (H, W, C) of an image; None for text ((block_size,) from the config)
  num_classes: Optional[int]  # None: unlabelled (every label 0)
  splits: Tuple[Split, ...]
  origin: str = "tfds"
  tfds_name: Optional[str] = None  # origin "tfds": the TFDS builder (its newest registered version)
  built_from: Optional[str] = None  # origin "stacked": the built-in dataset it is computed from
  binary: bool = False  # images take only two values (binarized data)
  pixel_scale: int = 1  # stored pixel values times this are 0..255 (binarized_mnist stores 0/1)
  char_vocab: Optional[int] = None  # text: symbols of the char tokenizer
  feature_domain: Optional[str] = None  # metrics compare samples in classifier_<domain>; None: Inception

  def __post_init__(self):
    if self.kind not in ("image", "text") or self.origin not in ORIGINS:
      raise ValueError(
        f"{self.name}: kind {self.kind!r} / origin {self.origin!r} is not one of image, text / {ORIGINS}"
      )
    if (self.origin == "tfds") != (self.tfds_name is not None) or (self.origin == "stacked") != bool(self.built_from):
      raise ValueError(f"{self.name}: origin 'tfds' needs tfds_name and 'stacked' built_from (and only they)")

  def split_names(self) -> Tuple[str, ...]:
    return tuple(s.name for s in self.splits)

  def stored_splits(self) -> Tuple[str, ...]:
    """The splits the source holds (what prepare caches and export writes), in order."""
    return tuple(s.name for s in self.splits if s.stored)


def text_splits(train: int, validation: int, test: int) -> Tuple[Split, ...]:
  """TFDS's three text splits and the ones genjax.data.sources.tfds_text computes from them:
  nanoGPT's 90/10 cut of their concatenation, and the whole corpus."""
  total = train + validation + test
  cut = int(total * 0.9)
  stored = (Split("train", train), Split("validation", validation), Split("test", test))
  return stored + (
    Split("nanogpt_train", cut, False),
    Split("nanogpt_val", total - cut, False),
    Split("all", total, False),
  )


# name -> entry. Images first, then text: the order genjax lists them in (help and error messages).
BUILTINS: Dict[str, Builtin] = {
  b.name: b
  for b in (
    Builtin(
      name="digits",
      kind="image",
      shape=(8, 8, 1),
      num_classes=10,
      splits=(Split("train", 1500), Split("test", 297), Split("all", 1797, stored=False)),
      origin="sklearn_digits",
    ),
    Builtin(
      name="mnist",
      kind="image",
      shape=(28, 28, 1),
      num_classes=10,
      splits=(Split("train", 60000), Split("test", 10000)),
      tfds_name="mnist",
      feature_domain="mnist",
    ),
    Builtin(
      name="fashion_mnist",
      kind="image",
      shape=(28, 28, 1),
      num_classes=10,
      splits=(Split("train", 60000), Split("test", 10000)),
      tfds_name="fashion_mnist",
      feature_domain="fashion_mnist",
    ),
    Builtin(
      name="binarized_mnist",
      kind="image",
      shape=(28, 28, 1),
      num_classes=None,
      splits=(Split("train", 50000), Split("validation", 10000), Split("test", 10000)),
      tfds_name="binarized_mnist",
      binary=True,
      pixel_scale=255,
      feature_domain="mnist",
    ),
    Builtin(
      name="cifar10",
      kind="image",
      shape=(32, 32, 3),
      num_classes=10,
      splits=(Split("train", 50000), Split("test", 10000)),
      tfds_name="cifar10",
    ),
    Builtin(
      name="stacked_mnist",
      kind="image",
      shape=(28, 28, 3),
      num_classes=1000,
      splits=(Split("train", 60000), Split("test", 10000)),
      origin="stacked",
      built_from="mnist",
    ),
    Builtin(
      name="tiny_shakespeare",
      kind="text",
      shape=None,
      num_classes=None,
      splits=text_splits(train=1003854, validation=55770, test=55770),
      tfds_name="tiny_shakespeare",
      char_vocab=65,
    ),
  )
}


def names(kind: Optional[str] = None) -> Tuple[str, ...]:
  """The built-in datasets (of `kind`, "image" or "text"), in registry order."""
  return tuple(n for n, b in BUILTINS.items() if kind is None or b.kind == kind)


def known_names() -> Tuple[str, ...]:
  """Every name data.name takes besides tfds:...: built-in images, built-in text, your own data."""
  return names("image") + names("text") + OWN_DATASETS


def find(name: str) -> Optional[Builtin]:
  """The entry of `name`, or None when it is not a built-in dataset."""
  return BUILTINS.get(name)


def get(name: str) -> Builtin:
  """The entry of `name`; a ConfigError naming the close matches when there is none."""
  entry = BUILTINS.get(name)
  if entry is None:
    raise unknown_dataset(name)
  return entry


def unknown_dataset(name: str) -> ConfigError:
  """The error for a data.name that names no dataset, with the known names closest to it."""
  known = known_names()
  close = difflib.get_close_matches(name, known, n=2)
  hint = f" Did you mean {' or '.join(close)}?" if close else ""
  return ConfigError(
    f"Unknown dataset --config.data.name={name!r}.{hint} Known: {', '.join(known)}, or any TFDS "
    "dataset with an image or text feature as tfds:NAME[:VERSION] (prepared in data.data_dir)."
  )


def tfds_entries() -> Tuple[Builtin, ...]:
  """The built-in datasets read from TFDS (the ones genjax prepares and exports), in order."""
  return tuple(b for b in BUILTINS.values() if b.origin == "tfds")


def tfds_source(name: str) -> Optional[Builtin]:
  """The TFDS-read entry that the built-in dataset `name` comes from: itself, the one it is
  built from (stacked_mnist: mnist), or None when it needs no TFDS dataset (digits)."""
  entry = get(name)
  while entry.origin == "stacked":
    entry = get(entry.built_from)
  return entry if entry.origin == "tfds" else None
