"""Portable datasets: a prepared TFDS dataset written once as numpy arrays (images) or text, so
genjax reads it with numpy alone: no TensorFlow, tensorflow-datasets or array_record (e.g. on an
accelerator machine that has none of them).

    python -m genjax.data.export --datasets mnist,tiny_shakespeare --out DIR [--data_dir D]

writes DIR/<name>/genjax_export.json (what the dataset is, its splits and their sizes) and one
file per split: <split>.npz (compressed uint8 images [N, H, W, C] and int32 labels, in TFDS's
stored order) or <split>.txt (UTF-8). Point a run at it with --config.data.data_dir=DIR (or
GENJAX_DATA_DIR=DIR): wherever DIR/<name>/genjax_export.json exists, genjax reads the export, and
the batches are byte for byte those of the TFDS dataset it came from.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from typing import Dict, Optional, Tuple

import numpy as np

from genjax import paths
from genjax.config import ConfigError

MARKER = "genjax_export.json"
FORMAT_VERSION = 1
IMAGE_SPLITS = {
  "mnist": ("train", "test"),
  "fashion_mnist": ("train", "test"),
  "cifar10": ("train", "test"),
  "binarized_mnist": ("train", "validation", "test"),
}
TEXT_SPLITS = {"tiny_shakespeare": ("train", "validation", "test")}


def exported_dir(name: str, data_cfg) -> Optional[str]:
  """DATA_DIR/<name> when it holds an export of `name`, else None."""
  from genjax.data import tfds_io

  folder = paths.join(tfds_io.data_dir_for(data_cfg), name)
  return folder if paths.exists(paths.join(folder, MARKER)) else None


def read_info(folder: str) -> dict:
  info = json.loads(paths.read_text(paths.join(folder, MARKER)))
  if info.get("format") != FORMAT_VERSION:
    raise ValueError(
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
    raise ValueError(
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


def export(name: str, out: str, data_cfg) -> dict:
  """Writes the export of the prepared TFDS dataset `name` to OUT/<name>; returns its info."""
  from genjax.data import sources, tfds_io

  folder = paths.join(out, name)
  paths.makedirs(folder)
  if name in TEXT_SPLITS:
    builder = tfds_io.open_builder(name, data_cfg)
    info = {"format": FORMAT_VERSION, "name": name, "kind": "text", "splits": {}}
    for split in TEXT_SPLITS[name]:
      text = sources.tfds_split_text(builder, split)
      paths.write_atomic(paths.join(folder, f"{split}.txt"), text.encode("utf-8"))
      info["splits"][split] = len(text)
  elif name in IMAGE_SPLITS:
    info = {"format": FORMAT_VERSION, "name": name, "kind": "image", "splits": {}}
    for split in IMAGE_SPLITS[name]:
      source, num_classes = sources.tfds_images(name, split, _whole_in_memory(data_cfg))
      everything = np.arange(source.num_examples)
      images_, labels = source.get(everything)
      buffer = io.BytesIO()
      np.savez_compressed(buffer, images=images_, labels=labels)
      paths.write_atomic(paths.join(folder, f"{split}.npz"), buffer.getvalue())
      info.update(shape=list(source.shape), num_classes=num_classes)
      info["splits"][split] = int(source.num_examples)
  else:
    known = ", ".join(sorted({**IMAGE_SPLITS, **TEXT_SPLITS}))
    raise ValueError(f"Cannot export {name!r}: genjax exports {known}.")
  # the marker last: a half-written export is not read
  paths.write_atomic(paths.join(folder, MARKER), json.dumps(info, indent=1))
  return info


def _whole_in_memory(data_cfg):
  import dataclasses

  return dataclasses.replace(data_cfg, in_memory_max_mb=1 << 30)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m genjax.data.export", description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--datasets", required=True, help="comma-separated: mnist,fashion_mnist,binarized_mnist,cifar10,tiny_shakespeare"
  )
  parser.add_argument("--out", required=True, help="the folder to write (one sub-folder per dataset)")
  parser.add_argument(
    "--data_dir", default=None, help="the prepared TFDS datasets (default: GENJAX_DATA_DIR, ~/tensorflow_datasets)"
  )
  parser.add_argument("--manual_dir", default=None, help="raw files, if a dataset must be prepared first")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  from genjax import cli
  from genjax.config import Data
  from genjax.data import tfds_io

  names = [n.strip() for n in args.datasets.split(",") if n.strip()]
  for name in names:
    if paths.join(args.out, name) == paths.join(tfds_io.data_dir_for(Data(data_dir=args.data_dir)), name):
      cli.fail(f"--out {args.out} is the TFDS data_dir itself: write the export to another folder.")
    try:
      info = export(name, args.out, Data(name=name, data_dir=args.data_dir, manual_dir=args.manual_dir))
    except (ValueError, OSError, tfds_io.DatasetNotPreparedError) as e:
      cli.fail(e)
    folder = paths.path(paths.join(args.out, name))
    size = sum(f.stat().length for f in folder.iterdir())
    print(f"{name}: {info['splits']} -> {folder} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
  main()
