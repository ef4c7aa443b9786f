"""Periodic artefacts in generated images: the mean power spectrum along image rows (columns'
frequencies) of samples beside real images. Transposed-convolution artefacts with a period of P
columns show as a peak at frequency W/P; natural images decay smoothly.

  python experiments/reference/column_spectrum.py --samples S.npy --dataset fashion_mnist [--num 1000]

S.npy: images in [-1, 1], [N, H, W, C] (python -m genjax.sample --out S.npy). Prints the
normalised power at frequencies 0..W/2 of both sets and, for periods 4 and 2, the power at that
frequency over its neighbours' mean (about 1 or below: no peak).
"""

import argparse

import numpy as np

from genjax import config as C
from genjax import data


def spectrum(images: np.ndarray) -> np.ndarray:
  x = images - images.mean(axis=2, keepdims=True)  # each row's mean removed
  power = (np.abs(np.fft.rfft(x, axis=2)) ** 2).mean(axis=(0, 1, 3))
  return power / power.sum()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--samples", required=True)
  parser.add_argument("--dataset", required=True)
  parser.add_argument("--num", type=int, default=1000)
  args = parser.parse_args()
  samples = np.load(args.samples)[: args.num]
  real = next(iter(data.load(C.Data(name=args.dataset), "train").eval_batches(len(samples), 1)))["image"]
  width = samples.shape[2]
  for name, images in (("samples", samples), (f"{args.dataset} train", real)):
    p = spectrum(images)
    print(f"{name:>20}: " + " ".join(f"{v:.4f}" for v in p))
    for period in (4, 2):
      k = width // period
      neighbours = [p[j] for j in (k - 1, k + 1) if 0 < j < len(p)]
      print(f"{'':>20}  period {period} (k={k}) over its neighbours: {p[k] / np.mean(neighbours):.3f}")


if __name__ == "__main__":
  main()
