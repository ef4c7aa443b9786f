"""The reference-statistics cache is keyed by the images the statistics are of: two image folders,
or one folder before and after its images change, never share statistics."""

import os

import numpy as np
from PIL import Image

from genjax.config import Data
from genjax.metrics import reference_stats
from genjax.metrics.features import FeatureNet

# An image's mean pixel as its one feature: the statistics say which images they were of.
MEAN_PIXEL = FeatureNet(
  name="mean_pixel",
  dim=1,
  num_classes=1,
  apply=lambda images: (images.mean(axis=(1, 2, 3))[:, None], np.zeros((len(images), 1), np.float32)),
  fingerprint="mean_pixel-1",
)


def write_images(folder, level: int, n: int = 6, size: int = 8):
  """n PNGs under `folder` whose pixels lie near `level` (0..255)."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(level)
  for k in range(n):
    pixels = np.clip(level + rng.integers(-20, 21, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(os.path.join(folder, f"{k}.png"))


def stats(path, cache_dir, log=None, **data):
  messages = []
  cfg = Data(name="folder", path=str(path), image_size=8, holdout=0.5, **data)
  ref = reference_stats.reference_stats(cfg, "all", MEAN_PIXEL, cache_dir=str(cache_dir), log=messages.append)
  return ref, messages


def test_two_folders_and_a_changed_folder_have_their_own_statistics(tmp_path):
  write_images(tmp_path / "dark", 30)
  write_images(tmp_path / "bright", 220)
  cache = tmp_path / "cache"
  dark, said = stats(tmp_path / "dark", cache)
  assert any("Computing" in m for m in said) and dark.count == 6
  bright, said = stats(tmp_path / "bright", cache)
  assert any("Computing" in m for m in said), "the second folder reused the first one's statistics"
  assert dark.mean.max() < -0.6 and bright.mean.min() > 0.6  # each folder's own images
  again, said = stats(tmp_path / "dark", cache)
  assert not said and np.array_equal(again.mean, dark.mean)  # read back, not recomputed
  assert len(os.listdir(cache)) == 2

  # the preprocessing is part of the key: the same folder in gray is other statistics
  gray, said = stats(tmp_path / "dark", cache, channels=1)
  assert any("Computing" in m for m in said) and len(os.listdir(cache)) == 3
  # an image rewritten (another size, another time) changes the folder's fingerprint
  path = tmp_path / "dark" / "0.png"
  Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(path)
  os.utime(path, ns=(1, 1))
  changed, said = stats(tmp_path / "dark", cache)
  assert any("Computing" in m for m in said) and changed.mean.max() > dark.mean.max()


def test_source_key_of_a_builtin_dataset_reads_nothing():
  key = reference_stats.source_key(Data(name="digits"), "train")
  assert key == {"dataset": "digits", "split": "train", "binarize": "none"}
  path = reference_stats.cache_path(key, "classifier_digits", "/cache")
  assert path.startswith("/cache/digits_train_classifier_digits_") and path.endswith(".npz")
  other = reference_stats.cache_path({**key, "binarize": "threshold"}, "classifier_digits", "/cache")
  assert other != path
