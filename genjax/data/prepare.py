"""Prepares TFDS datasets offline as array_record, from raw files in a manual folder.

  python -m genjax.data.prepare --datasets mnist,fashion_mnist,binarized_mnist,tiny_shakespeare \
      [--data_dir DIR] [--manual_dir DIR]

--data_dir defaults to $GENJAX_DATA_DIR, else ~/tensorflow_datasets. --manual_dir is a folder with
one sub-folder per dataset (mnist/, fashion_mnist/, ...) holding the files TFDS would download;
it defaults to $GENJAX_MANUAL_DIR. Needs TensorFlow (tensorflow-cpu); reading does not.
Image datasets are also decoded once into genjax's in-memory cache, so training starts fast.
stacked_mnist is built from mnist; digits needs nothing.
"""

from __future__ import annotations

import argparse
import sys
import time

from genjax.config import Data
from genjax.data import load, registry, tfds_io


def main(argv=None) -> int:
  known = registry.known_names()
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--datasets", required=True, help=f"comma-separated, from: {', '.join(known)}")
  parser.add_argument("--data_dir", default=None, help="where prepared datasets go")
  parser.add_argument("--manual_dir", default=None, help="folder with one sub-folder of raw files per dataset")
  args = parser.parse_args(argv)
  names = [n.strip() for n in args.datasets.split(",") if n.strip()]
  unknown = [n for n in names if n not in known]
  if unknown:
    parser.error(f"unknown datasets {unknown}; known: {', '.join(known)}")
  # stacked_mnist is mnist read differently; digits ships with scikit-learn; your own data
  # (folder, text) is read as it is.
  needed = (registry.tfds_source(n) for n in names if n not in registry.OWN_DATASETS)
  entries = list({e.name: e for e in needed if e is not None}.values())
  data_dir = tfds_io.data_dir_for(Data(data_dir=args.data_dir))
  tfds_io.import_tfds().disable_progress_bar()  # one line per dataset below instead
  total = time.time()
  for entry in entries:
    if not _prepare(entry, data_dir, args.manual_dir):
      return 1
  print(f"done in {time.time() - total:.1f} s (data_dir {data_dir})", flush=True)
  return 0


def _prepare(entry: registry.Builtin, data_dir: str, manual_root) -> bool:
  """Prepares the TFDS dataset of `entry` (unless it is) and decodes an image dataset's stored
  splits into genjax's cache; False (the error printed) when it cannot be prepared."""
  name = entry.name
  cfg = Data(name=name, data_dir=data_dir, manual_dir=manual_root)
  manual_dir = tfds_io.manual_dir_for(cfg, entry.tfds_name)
  start = time.time()
  builder = tfds_io.import_tfds().builder(entry.tfds_name, data_dir=data_dir, file_format="array_record")
  if builder.is_prepared():
    print(f"{name}: already prepared in {builder.data_dir}", flush=True)
  else:
    try:
      builder = tfds_io.prepare(entry.tfds_name, data_dir, manual_dir)
    except (tfds_io.DatasetNotPreparedError, tfds_io.ChecksumMismatchError) as e:
      print(f"{name}: FAILED\n{e}", file=sys.stderr, flush=True)
      return False
    splits = ", ".join(f"{s}={info.num_examples}" for s, info in builder.info.splits.items())
    print(
      f"{name}: prepared from {manual_dir} into {builder.data_dir} ({splits}) in {time.time() - start:.1f} s",
      flush=True,
    )
  if entry.kind == "image":
    start = time.time()
    for split in entry.stored_splits():
      load(cfg, split)
    print(f"{name}: decoded into genjax's cache in {time.time() - start:.1f} s", flush=True)
  return True


if __name__ == "__main__":
  sys.exit(main())
