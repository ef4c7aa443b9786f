"""Portable datasets: a prepared TFDS dataset written once as numpy arrays (images) or text, so
genjax reads it with numpy alone: no TensorFlow, tensorflow-datasets or array_record (e.g. on an
accelerator machine that has none of them).

    python -m genjax.data.export --datasets mnist,tiny_shakespeare --out DIR [--data_dir D]

writes DIR/<name>/genjax_export.json (what the dataset is, its splits and their sizes) and one
file per split: <split>.npz (compressed uint8 images [N, H, W, C] and int32 labels, in TFDS's
stored order) or <split>.txt (UTF-8). Point a run at it with --config.data.data_dir=DIR (or
GENJAX_DATA_DIR=DIR): wherever DIR/<name>/genjax_export.json exists, genjax reads the export, and
the batches are byte for byte those of the TFDS dataset it came from.

This module writes exports; genjax.data.portable reads them. What can be exported, and which
splits, is genjax.data.registry's (its TFDS datasets and their stored splits).
"""

from __future__ import annotations

import argparse
import io
import json
import sys

import numpy as np

from genjax import errors, paths
from genjax.data import registry, sources, tfds_io
from genjax.data.portable import FORMAT_VERSION, MARKER


def export(name: str, out: str, data_cfg) -> dict:
  """Writes the export of the prepared TFDS dataset `name` to OUT/<name>; returns its info."""
  folder = paths.join(out, name)
  paths.makedirs(folder)
  entry = registry.find(name)
  if entry is None or entry.origin != "tfds":
    known = ", ".join(sorted(b.name for b in registry.tfds_entries()))
    raise errors.ConfigError(f"Cannot export {name!r}: genjax exports {known}.")
  info = {"format": FORMAT_VERSION, "name": name, "kind": entry.kind, "splits": {}}
  (_write_text if entry.kind == "text" else _write_images)(entry, folder, data_cfg, info)
  # the marker last: a half-written export is not read
  paths.write_atomic(paths.join(folder, MARKER), json.dumps(info, indent=1))
  return info


def _write_text(entry: registry.Builtin, folder: str, data_cfg, info: dict):
  builder = tfds_io.open_builder(entry.tfds_name, data_cfg)
  for split in entry.stored_splits():
    text = sources.tfds_split_text(builder, split)
    paths.write_atomic(paths.join(folder, f"{split}.txt"), text.encode("utf-8"))
    info["splits"][split] = len(text)


def _write_images(entry: registry.Builtin, folder: str, data_cfg, info: dict):
  for split in entry.stored_splits():
    source, num_classes = sources.tfds_images(entry.name, split, _whole_in_memory(data_cfg))
    everything = np.arange(source.num_examples)
    images_, labels = source.get(everything)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images_, labels=labels)
    paths.write_atomic(paths.join(folder, f"{split}.npz"), buffer.getvalue())
    info.update(shape=list(source.shape), num_classes=num_classes)
    info["splits"][split] = int(source.num_examples)


def _whole_in_memory(data_cfg):
  import dataclasses

  return dataclasses.replace(data_cfg, in_memory_max_mb=1 << 30)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m genjax.data.export", description=__doc__.split("\n\n")[0])
  exportable = ",".join(b.name for b in registry.tfds_entries())
  parser.add_argument("--datasets", required=True, help=f"comma-separated: {exportable}")
  parser.add_argument("--out", required=True, help="the folder to write (one sub-folder per dataset)")
  parser.add_argument(
    "--data_dir", default=None, help="the prepared TFDS datasets (default: GENJAX_DATA_DIR, ~/tensorflow_datasets)"
  )
  parser.add_argument("--manual_dir", default=None, help="raw files, if a dataset must be prepared first")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  from genjax import cli
  from genjax.config import Data

  names = [n.strip() for n in args.datasets.split(",") if n.strip()]
  for name in names:
    if paths.join(args.out, name) == paths.join(tfds_io.data_dir_for(Data(data_dir=args.data_dir)), name):
      cli.fail(f"--out {args.out} is the TFDS data_dir itself: write the export to another folder.")
    try:
      info = export(name, args.out, Data(name=name, data_dir=args.data_dir, manual_dir=args.manual_dir))
    except errors.UserError as e:
      cli.fail(e)
    except OSError as e:  # the --out folder cannot be written
      cli.fail(paths.storage_error(e, args.out, "write the export"))
    folder = paths.path(paths.join(args.out, name))
    size = sum(f.stat().length for f in folder.iterdir())
    print(f"{name}: {info['splits']} -> {folder} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
  main()
