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
from genjax.data import DATASETS, IMAGE_DATASETS, OWN_DATASETS, load, tfds_io

# The splits each dataset's in-memory cache is built for.
_CACHE_SPLITS = {
  "mnist": ("train", "test"),
  "fashion_mnist": ("train", "test"),
  "cifar10": ("train", "test"),
  "binarized_mnist": ("train", "validation", "test"),
}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--datasets", required=True, help=f"comma-separated, from: {', '.join(DATASETS)}")
  parser.add_argument("--data_dir", default=None, help="where prepared datasets go")
  parser.add_argument("--manual_dir", default=None, help="folder with one sub-folder of raw files per dataset")
  args = parser.parse_args(argv)
  names = [n.strip() for n in args.datasets.split(",") if n.strip()]
  unknown = [n for n in names if n not in DATASETS]
  if unknown:
    parser.error(f"unknown datasets {unknown}; known: {', '.join(DATASETS)}")
  # stacked_mnist is mnist read differently; digits ships with scikit-learn; your own data
  # (folder, text) is read as it is.
  skip = ("digits", *OWN_DATASETS)
  tfds_names = list(dict.fromkeys("mnist" if n == "stacked_mnist" else n for n in names if n not in skip))
  data_dir = tfds_io.data_dir_for(Data(data_dir=args.data_dir))
  tfds_io.import_tfds().disable_progress_bar()  # one line per dataset below instead
  total = time.time()
  for name in tfds_names:
    cfg = Data(name=name, data_dir=data_dir, manual_dir=args.manual_dir)
    manual_dir = tfds_io.manual_dir_for(cfg, name)
    start = time.time()
    builder = tfds_io.import_tfds().builder(name, data_dir=data_dir, file_format="array_record")
    if builder.is_prepared():
      print(f"{name}: already prepared in {builder.data_dir}", flush=True)
    else:
      try:
        builder = tfds_io.prepare(name, data_dir, manual_dir)
      except (tfds_io.DatasetNotPreparedError, tfds_io.ChecksumMismatchError) as e:
        print(f"{name}: FAILED\n{e}", file=sys.stderr, flush=True)
        return 1
      splits = ", ".join(f"{s}={info.num_examples}" for s, info in builder.info.splits.items())
      print(
        f"{name}: prepared from {manual_dir} into {builder.data_dir} ({splits}) in {time.time() - start:.1f} s",
        flush=True,
      )
    if name in IMAGE_DATASETS:
      start = time.time()
      for split in _CACHE_SPLITS.get(name, ("train", "test")):
        load(cfg, split)
      print(f"{name}: decoded into genjax's cache in {time.time() - start:.1f} s", flush=True)
  print(f"done in {time.time() - total:.1f} s (data_dir {data_dir})", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
