"""Your own data: a folder of images (`data.name="folder"`) or text files (`data.name="text"`).

Images. Every PNG/JPEG file under `data.path` (local or gs://, found recursively, sorted by
path relative to the folder) is one example. When every image lies in a sub-folder, the sorted
sub-folder names are the classes (label k: the k-th name); images directly in the folder mean no
classes (label 0). An image is decoded with Pillow, brought to 8 bits per channel (16-bit gray scaled by
255/65535: Pillow's own conversion would clip it, every value above 255 turning white), converted
to RGB (alpha dropped) or gray (`data.channels`), cropped to its largest centered square (or the centered `data.crop_size`
square, as DCGAN's CelebA crops 108 pixels) and resized to `data.image_size`
(bicubic, Pillow's `resize` of the cropped square only, so nothing outside it bleeds in); JPEGs
are decoded at the smallest DCT scale that keeps that square at least that size
(`Image.draft`; a scale of 1/2 to 1/8 averages JPEG blocks, so a crop edge that cuts through a
block blends into the outermost output pixel). Images whose kept square is under half of
`data.image_size` are upscaled more than twice over: one warning per split says how many of the
first images read are that small, naming one. Random horizontal flips are `data.flip`, drawn by the batch
function like every other dataset's augmentation (genjax.data.datasets).

Streaming. `FolderSource.get` opens only the files of the indices asked for, on a thread pool
(`data.decode_threads`). When the decoded split fits in `data.in_memory_max_mb`, decoded images
are also kept in memory, so the second epoch opens no file; a larger split is decoded for every
batch and never held whole.

Text. `data.path` is one file, or a folder whose files (recursively, sorted, hidden files
skipped) are read as UTF-8 and concatenated (a newline added after a file that lacks one).

Splits. "all" is every example (image files in sorted order; the text's characters). "test"
holds out the fraction `data.holdout`: for images every example i with
floor((i + 1) * h) > floor(i * h), i.e. every 10th file for h = 0.1, so each class is held out
in proportion; for text the last `holdout` of the characters, as nanoGPT does. "train" is the
rest. Each may be sliced as in TFDS: "train[:90%]", "all[10:20]", "test[-50:]" (percent
boundaries are floor(n * k / 100)). All of it is a pure function of the files' names and
contents, so every process and every resumed run sees the same splits.
"""

from __future__ import annotations

import concurrent.futures
import fractions
import io
import logging
import math
import os
import re
import threading
from typing import List, Optional, Tuple

import numpy as np

from genjax import errors, paths
from genjax.config import ConfigError

log = logging.getLogger("genjax")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Pillow's modes of more than 8 bits per sample that a PNG decodes to, and their white level: 16-bit
# gray opens as "I;16" ("I" in Pillows before 10). 16-bit RGB(A) and gray + alpha PNGs open as
# 8-bit RGB(A) and LA already (Pillow keeps each sample's high byte).
WHITE_LEVEL = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}
SPLITS = ("train", "test", "all")
_SPLIT = re.compile(r"^(\w+)(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?$")


class CropTooLarge(ValueError):
  """data.crop_size does not fit an image (decode_image turns it into a ConfigError naming the file)."""

  def __init__(self, crop: int, image_size):
    super().__init__(f"data.crop_size={crop} is larger than the image ({image_size[0]}x{image_size[1]})")
    self.crop, self.image_size = crop, image_size


class UnsupportedDepth(ValueError):
  """An image's sample values have no 8-bit equivalent (decode_image names the file)."""


class UnreadableImageError(ConfigError):
  """An image file under data.path that Pillow cannot decode; the message names it."""


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------


def parse_split(split: str, what: str) -> Tuple[str, Optional[str], Optional[str]]:
  """("train" | "test" | "all", start, stop) of a split string such as "train[:90%]"."""
  match = _SPLIT.match(split.strip())
  if not match or match.group(1) not in SPLITS:
    raise ConfigError(
      f"Split {split!r} of {what} is not one genjax reads: use train, test or all (test is the "
      "data.holdout fraction, train the rest), optionally sliced as in TFDS, e.g. train[:90%], "
      "all[100:200] or test[-50:]."
    )
  return match.group(1), match.group(2), match.group(3)


def _bound(text: Optional[str], n: int, default: int) -> int:
  if text is None:
    return default
  if text.endswith("%"):
    k = int(text[:-1])
    if not -100 <= k <= 100:
      raise ConfigError(f"Split boundary {text!r} must lie between -100% and 100%.")
    return n * k // 100 if k >= 0 else n - n * -k // 100
  return int(text)


def slice_bounds(start: Optional[str], stop: Optional[str], n: int) -> slice:
  """The python slice of [start:stop] (ints or percents) over n examples."""
  return slice(_bound(start, n, 0), _bound(stop, n, n))


def _fraction(holdout: float) -> fractions.Fraction:
  return fractions.Fraction(holdout).limit_denominator(1_000_000)  # 0.1 -> 1/10 exactly


def holdout_mask(n: int, holdout: float) -> np.ndarray:
  """bool[n]: the examples of the "test" split, floor(n * holdout) of them spread evenly."""
  h = _fraction(holdout)
  i = np.arange(n, dtype=np.int64)
  return (i + 1) * h.numerator // h.denominator > i * h.numerator // h.denominator


def select(n: int, split: str, holdout: float, what: str) -> np.ndarray:
  """The example indices int64[k] (in stored order) of `split` over n examples."""
  base, start, stop = parse_split(split, what)
  indices = np.arange(n, dtype=np.int64)
  if base != "all":
    test = holdout_mask(n, holdout)
    indices = indices[test] if base == "test" else indices[~test]
  return indices[slice_bounds(start, stop, len(indices))]


# ----------------------------------------------------------------------------------------------
# Listing files
# ----------------------------------------------------------------------------------------------


def _root(path: Optional[str], name: str) -> str:
  if not path:
    kind = "a folder of images" if name == "folder" else "a text file or a folder of text files"
    raise ConfigError(f"data.name={name!r} reads {kind}: set --config.data.path=DIR (a local path or gs://bucket/dir).")
  root = str(paths.path(path))
  paths.check_reachable(root, "read data.path")
  try:
    found = paths.exists(root)
  except Exception as e:  # noqa: BLE001 - each store raises its own types; all mean "cannot read"
    raise paths.storage_error(e, root, "read data.path") from None
  if not found:
    raise ConfigError(
      f"data.path={path!r} does not exist. Point --config.data.path at "
      f"{'the folder holding your images' if name == 'folder' else 'your text file or folder'}."
    )
  return root


def _walk(root: str) -> List[Tuple[str, str]]:
  """(relative posix path, full path) of every file under root, hidden names skipped, sorted."""
  found = []
  top = paths.path(root)
  stack = [top]
  while stack:
    folder = stack.pop()
    for child in folder.iterdir():
      if child.name.startswith("."):
        continue
      if child.is_dir():
        stack.append(child)
      else:
        found.append((child.relative_to(top).as_posix(), str(child)))
  return sorted(found)


def list_images(path: Optional[str]) -> Tuple[List[str], np.ndarray, Optional[List[str]]]:
  """(image files sorted by relative path, int32 labels, class names or None) under `path`."""
  root = _root(path, "folder")
  if not paths.isdir(root):
    raise ConfigError(f"data.path={path!r} is a file; data.name='folder' reads a folder of PNG/JPEG images.")
  files = _walk(root)
  images = [(rel, full) for rel, full in files if rel.lower().endswith(IMAGE_SUFFIXES)]
  if not images:
    seen = ", ".join(rel for rel, _ in files[:5]) or "nothing"
    raise ConfigError(
      f"data.path={path!r} holds no PNG or JPEG image (files ending in {', '.join(IMAGE_SUFFIXES)}, "
      f"case-insensitive; found {seen}{' ...' if len(files) > 5 else ''}). Put your images there, "
      "optionally in one sub-folder per class."
    )
  top = [rel for rel, _ in images if "/" not in rel]
  if not top:
    classes = sorted({rel.split("/", 1)[0] for rel, _ in images})
    ids = {c: k for k, c in enumerate(classes)}
    labels = np.array([ids[rel.split("/", 1)[0]] for rel, _ in images], dtype=np.int32)
    return [full for _, full in images], labels, classes
  if len(top) != len(images):
    raise ConfigError(
      f"data.path={path!r} has {len(top)} images directly in it (e.g. {top[0]}) and "
      f"{len(images) - len(top)} in sub-folders: sub-folders are classes, so put every image in "
      "one (labelled), or all of them directly in the folder (unlabelled)."
    )
  return [full for _, full in images], np.zeros(len(images), np.int32), None


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


def to_8bit(image):
  """`image` with 8 bits per sample: the 16-bit modes of WHITE_LEVEL scaled to 0..255 (rounded),
  8-bit modes unchanged; UnsupportedDepth for floating-point samples or values above the white
  level."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if image.mode == "F":
    raise UnsupportedDepth("it holds 32-bit floating-point samples (Pillow mode F), which have no fixed white level")
  white = WHITE_LEVEL.get(image.mode)
  if white is None:
    return image
  values = np.asarray(image).astype(np.float64)
  if values.size and (values.min() < 0 or values.max() > white):
    raise UnsupportedDepth(
      f"its {image.mode} samples range over [{values.min():.0f}, {values.max():.0f}], outside the 16-bit "
      f"[0, {white}] genjax scales to 8 bits"
    )
  return Image.fromarray(np.round(values * (255 / white)).astype(np.uint8), mode="L")


def fit(image, size: int, channels: int, crop: Optional[int] = None, scale: float = 1.0) -> np.ndarray:
  """uint8[size, size, channels] of a PIL image: converted, center-cropped and resized (see above).

  crop: the side of the centered square kept, in pixels of the original image (None: the
  largest); `scale` is the image's size over the original's (below 1 after `Image.draft`).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  image = to_8bit(image).convert("RGB" if channels == 3 else "L")
  width, height = image.size
  side = min(width, height) if crop is None else round(crop * scale)
  if side > min(width, height):
    raise CropTooLarge(crop, (round(width / scale), round(height / scale)))
  left, top = (width - side) // 2, (height - side) // 2
  image = image.crop((left, top, left + side, top + side))  # crop first: no bleed from outside
  if side != size:
    image = image.resize((size, size), Image.Resampling.BICUBIC)
  return np.asarray(image, dtype=np.uint8).reshape(size, size, channels)


def fit_array(array: np.ndarray, size: int, channels: int, crop: Optional[int] = None) -> np.ndarray:
  """`fit` of a uint8[H, W, C] array (C in 1, 3, 4); unchanged when it already has that shape."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  array = np.asarray(array, dtype=np.uint8)
  if array.shape == (size, size, channels) and crop in (None, size):
    return array
  return fit(Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array), size, channels, crop)


def decode_image(data: bytes, size: int, channels: int, where: str = "image", crop: Optional[int] = None) -> np.ndarray:
  """uint8[size, size, channels]: the image in `data` center-cropped and resized (see above)."""
  return decode_sized(data, size, channels, where, crop)[0]


def decode_sized(
  data: bytes, size: int, channels: int, where: str = "image", crop: Optional[int] = None
) -> Tuple[np.ndarray, Tuple[int, int]]:
  """(decode_image's array, the image's (width, height) in pixels as stored)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  try:
    with Image.open(io.BytesIO(data)) as image:
      original = image.size
      # JPEG: decode at a reduced DCT scale when the kept square stays at least `size` wide.
      shrink = size / min(original) if crop is None else size / crop
      image.draft("RGB" if channels == 3 else "L", (math.ceil(original[0] * shrink), math.ceil(original[1] * shrink)))
      return fit(image, size, channels, crop, image.size[0] / original[0]), original
  except CropTooLarge as e:  # the file is fine: the crop is the problem
    raise errors.ConfigError(
      f"{where} is {e.image_size[0]}x{e.image_size[1]} pixels, smaller than the centered square "
      f"data.crop_size={e.crop} that the experiment keeps of each image. Set --config.data.crop_size=None "
      f"(the largest centered square of each image) or a size of at most {min(e.image_size)} pixels."
    ) from None
  except UnsupportedDepth as e:  # decoded fine, but its values have no 8-bit equivalent
    raise errors.ConfigError(
      f"{where} cannot be brought to 8 bits per channel: {e}. Save it as an 8-bit or 16-bit PNG, "
      "or a JPEG, or move it out of data.path."
    ) from None
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise UnreadableImageError(
      f"Cannot decode {where} as an image ({type(e).__name__}: {e}). Replace or delete the file "
      "(only PNG and JPEG files are read; data.crop_size must fit every image), then run again."
    ) from None


def default_threads() -> int:
  return max(1, min(8, os.cpu_count() or 1))


class FolderSource:
  """An ImageSource over image files, decoding only the files asked for (see the module doc)."""

  def __init__(
    self,
    files: List[str],
    labels: np.ndarray,
    size: int,
    channels: int,
    keep: bool,
    threads: int = 0,
    crop: Optional[int] = None,
    what: str = "the image folder",
  ):
    self.files = list(files)
    self.labels = np.asarray(labels, dtype=np.int32)
    self.num_examples = len(self.files)
    self.shape = (size, size, channels)
    self.max_value = 255
    self.threads = threads or default_threads()
    self.crop = crop
    self.what = what  # how the small-image warning names this split
    self._kept = np.zeros((self.num_examples, *self.shape), np.uint8) if keep else None
    self._have = np.zeros(self.num_examples, bool)
    self._pool = None
    self._lock = threading.Lock()
    self._read, self._small, self._warned = 0, [], False  # images decoded, and the small ones among them

  def decode(self, index: int) -> np.ndarray:
    return self._decode_sized(index)[0]

  def _decode_sized(self, index: int) -> Tuple[np.ndarray, Tuple[int, int]]:
    where = self.files[index]
    try:
      data = paths.read_bytes(where)
    except OSError as e:
      raise UnreadableImageError(
        f"Cannot read {where} ({type(e).__name__}: {e}). Check it exists and is readable."
      ) from None
    return decode_sized(data, self.shape[0], self.shape[2], where, self.crop)

  def _decode_many(self, indices: List[int]) -> List[np.ndarray]:
    if self.threads == 1 or len(indices) < 2:
      decoded = [self._decode_sized(i) for i in indices]
    else:
      with self._lock:
        if self._pool is None:
          self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="genjax-decode")
      decoded = list(self._pool.map(self._decode_sized, indices))
    with self._lock:
      self._note_sizes(indices, [original for _, original in decoded])
    return [image for image, _ in decoded]

  def _note_sizes(self, indices: List[int], originals: List[Tuple[int, int]]):
    """Counts the images whose kept square is under half the output size; one warning, the first
    time a batch holds any, says how many of the images read so far are that small."""
    if self._warned:
      return
    side = self.shape[0]
    self._read += len(indices)
    self._small += [(i, o) for i, o in zip(indices, originals) if 2 * (self.crop or min(o)) < side]
    if self._small:
      self._warned = True
      index, (width, height) = self._small[0]
      log.warning(
        "%d of the first %d images read from %s are smaller than half of data.image_size=%d on their "
        "shorter side%s (e.g. %s, %dx%d pixels), so they are upscaled more than twice over and come out "
        "blurry: lower --config.data.image_size, or leave such images out. (Said once for this split.)",
        len(self._small),
        self._read,
        self.what,
        side,
        f" (data.crop_size={self.crop})" if self.crop else "",
        self.files[index],
        width,
        height,
      )

  def get(self, indices):
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if self._kept is None:
      unique, inverse = np.unique(indices, return_inverse=True)
      decoded = self._decode_many(unique.tolist())
      images = np.stack(decoded)[inverse] if decoded else np.zeros((0, *self.shape), np.uint8)
      return images, self.labels[indices]
    missing = np.unique(indices[~self._have[indices]])
    for i, image in zip(missing.tolist(), self._decode_many(missing.tolist())):
      self._kept[i] = image
      self._have[i] = True
    return self._kept[indices], self.labels[indices]


def folder_images(data_cfg, split: str) -> Tuple[FolderSource, Optional[int]]:
  """The FolderSource of `split` of the images under data.path and its number of classes."""
  files, labels, classes = list_images(data_cfg.path)
  chosen = select(len(files), split, data_cfg.holdout, f"the image folder {data_cfg.path!r}")
  if len(chosen) == 0:
    raise ConfigError(
      f"Split {split!r} of the image folder {data_cfg.path!r} ({len(files)} images, data.holdout="
      f"{data_cfg.holdout}) is empty: raise data.holdout (the 'test' fraction), add images, or pick "
      "another split (e.g. --config.data.eval_split=train[:10%])."
    )
  shape = (data_cfg.image_size, data_cfg.image_size, data_cfg.channels)
  keep = len(chosen) * math.prod(shape) / 2**20 <= data_cfg.in_memory_max_mb
  source = FolderSource(
    [files[i] for i in chosen],
    labels[chosen],
    data_cfg.image_size,
    data_cfg.channels,
    keep,
    data_cfg.decode_threads,
    data_cfg.crop_size,
    f"{data_cfg.path!r} ({split})",
  )
  return source, len(classes) if classes is not None else None


# ----------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------


def read_corpus(path: Optional[str]) -> str:
  """The text of the file `path`, or of every file under the folder `path`, concatenated."""
  root = _root(path, "text")
  files = _walk(root) if paths.isdir(root) else [(os.path.basename(root), root)]
  if not files:
    raise ConfigError(f"data.path={path!r} is an empty folder: put your text files (UTF-8) there.")
  parts = []
  for _, full in files:
    try:
      text = paths.read_bytes(full).decode("utf-8")
    except UnicodeDecodeError as e:
      raise ConfigError(
        f"{full} is not UTF-8 text ({e}). data.name='text' reads every file under data.path: convert "
        "it to UTF-8 or move it out of the folder."
      ) from None
    parts.append(text if not text or text.endswith("\n") or full == files[-1][1] else text + "\n")
  return "".join(parts)


def text_split(corpus: str, split: str, holdout: float, what: str) -> str:
  """The characters of `split`: "test" the last `holdout` of the corpus, "train" the rest."""
  base, start, stop = parse_split(split, what)
  h = _fraction(holdout)
  cut = len(corpus) - len(corpus) * h.numerator // h.denominator
  text = {"all": corpus, "train": corpus[:cut], "test": corpus[cut:]}[base]
  return text[slice_bounds(start, stop, len(text))]
