"""Images per second that a folder of images decodes at (genjax.data.files.FolderSource).

  python -m genjax.data.bench_folder [--path DIR] [--num 512] [--size 64] [--image_size 64]
      [--threads 1,2] [--batch 64] [--seconds 3]

Without --path it writes --num random --size x --size JPEGs (quality 90) into a temporary
folder first. Each thread count streams batches of --batch images (no in-memory cache, as for a
folder larger than data.in_memory_max_mb) through `FolderSource.get` for about --seconds and
prints images/s. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from genjax.data import files


def write_jpegs(folder: str, num: int, size: int, seed: int = 0) -> None:
  """`num` JPEGs of smooth random colour fields (compress like photos, unlike white noise)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  for k in range(num):
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
    noise = rng.integers(-8, 9, size=(size, size, 3))
    pixels = np.clip(np.asarray(image, np.int64) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(os.path.join(folder, f"{k:06d}.jpg"), quality=90)


def images_per_second(path: str, image_size: int, threads: int, batch: int, seconds: float) -> float:
  names, labels, _ = files.list_images(path)
  source = files.FolderSource(names, labels, image_size, 3, keep=False, threads=threads)
  order = np.random.default_rng(0).permutation(len(names))
  source.get(order[:batch])  # starts the thread pool, warms the page cache
  done, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    lo = done % len(names)
    source.get(order[np.arange(lo, lo + batch) % len(names)])
    done += batch
  return done / (time.perf_counter() - start)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--path", default=None, help="a folder of images (default: generated JPEGs)")
  parser.add_argument("--num", type=int, default=512, help="how many JPEGs to generate")
  parser.add_argument("--size", type=int, default=64, help="generated JPEGs are size x size")
  parser.add_argument("--image_size", type=int, default=64, help="data.image_size: decoded images are this square")
  parser.add_argument("--threads", default=f"1,{files.default_threads()}", help="comma-separated thread counts")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--seconds", type=float, default=3.0, help="per thread count")
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory(prefix="genjax-bench-folder-") as scratch:
    path = args.path
    if path is None:
      start = time.perf_counter()
      write_jpegs(scratch, args.num, args.size)
      print(f"wrote {args.num} {args.size}x{args.size} JPEGs in {time.perf_counter() - start:.1f} s", flush=True)
      path = scratch
    print(f"{path}: decoding to {args.image_size}x{args.image_size}x3, batches of {args.batch}, {os.cpu_count()} CPUs")
    for threads in dict.fromkeys(int(t) for t in args.threads.split(",")):
      rate = images_per_second(path, args.image_size, threads, args.batch, args.seconds)
      print(f"  threads={threads}: {rate:,.0f} images/s", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
