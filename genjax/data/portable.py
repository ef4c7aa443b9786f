"""Reading portable exports: the numpy arrays and text `python -m genjax.data.export` writes.

DATA_DIR/<name>/genjax_export.json (MARKER) says what the export holds (format FORMAT_VERSION,
kind, shape, classes, split sizes); <split>.npz holds uint8 images [N, H, W, C] and int32 labels,
<split>.txt the UTF-8 text. Reading needs numpy alone (no TensorFlow, tensorflow-datasets or
array_record); genjax.data.sources reads an export wherever the data_dir holds one.
"""

from __future__ import annotations

import io
import json
from typing import Dict, Optional, Tuple

import numpy as np

from genjax import errors, paths
from genjax.config import ConfigError
from genjax.data import tfds_io

MARKER = "genjax_export.json"
FORMAT_VERSION = 1


def exported_dir(name: str, data_cfg) -> Optional[str]:
  """DATA_DIR/<name> when it holds an export of `name`, else None."""
  folder = paths.join(tfds_io.data_dir_for(data_cfg), name)
  return folder if paths.exists(paths.join(folder, MARKER)) else None


def read_info(folder: str) -> dict:
  info = json.loads(paths.read_text(paths.join(folder, MARKER)))
  if info.get("format") != FORMAT_VERSION:
    raise errors.ConfigError(
      f"{folder} holds a genjax export of format {info.get('format')}, this genjax reads "
      f"format {FORMAT_VERSION}: export the dataset again with python -m genjax.data.export."
    )
  return info


def _check_split(info: dict, folder: str, split: str):
  if split not in info["splits"]:
    sliced = "[" in split
    raise ConfigError(
      f"The export in {folder} has splits {sorted(info['splits'])}, not {split!r}"
      + (" (TFDS split slicing needs the TFDS dataset itself, not an export)." if sliced else ".")
    )


def images(folder: str, split: str) -> Tuple[np.ndarray, np.ndarray, Optional[int]]:
  """(uint8 images [N,H,W,C], int32 labels [N], number of classes or None) of an exported split."""
  info = read_info(folder)
  _check_split(info, folder, split)
  with np.load(io.BytesIO(paths.read_bytes(paths.join(folder, f"{split}.npz")))) as data:
    images_, labels = data["images"], data["labels"]
  if len(images_) != info["splits"][split] or tuple(images_.shape[1:]) != tuple(info["shape"]):
    raise errors.ConfigError(
      f"{folder}/{split}.npz holds {images_.shape}, not the {info['splits'][split]} x "
      f"{tuple(info['shape'])} images its {MARKER} lists: export it again."
    )
  return images_, labels, info.get("num_classes")


def texts(folder: str) -> Dict[str, str]:
  """{split: text} of an exported text dataset."""
  info = read_info(folder)
  out = {}
  for split in info["splits"]:
    out[split] = paths.read_bytes(paths.join(folder, f"{split}.txt")).decode("utf-8")
  return out
