"""NVlabs/edm's own AugmentPipe (training/augment.py) on smooth random images, with every random
number it draws recorded, for checking genjax.families.diffusion.augment against it by replaying
the draws. For comparison only: nothing in genjax imports it; it needs torch, numpy and a checkout
of https://github.com/NVlabs/edm (its training/ and torch_utils/ packages).

    python experiments/reference/torch_edm_augment.py --edm EDM_CHECKOUT --out DIR

writes DIR/NAME.npz for each run of RUNS: the input images (NHWC, in [-1, 1]), the pipe's output
images (NHWC) and labels, the pipe's settings (every float attribute, as JSON), each tensor that
torch.rand / torch.randn / torch.randint returned during the call, in order (draw_0, draw_1, ...,
with the function in draw_kinds: rand, randn, randint2, randint4), and the reflect padding of its
geometric step (pad_margin: x0, y0, x1, y1; -1s when it has none), recorded from its
torch.nn.functional.pad call. tests/families/test_edm_augment.py runs it and replays the draws.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

EDM_CIFAR10 = dict(xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)  # EDM's train.py
EVERYTHING = dict(
  xflip=1,
  yflip=1,
  rotate_int=1,
  translate_int=1,
  scale=1,
  rotate_frac=1,
  aniso=1,
  translate_frac=1,
  brightness=1,
  contrast=1,
  lumaflip=1,
  hue=1,
  saturation=1,
)
# name: (AugmentPipe arguments, batch, height, width, channels, seed[, overrides]), overrides
# {k: values} replacing the k-th random tensor the pipe draws (reshaped to its shape)
RUNS = {
  # EDM's CIFAR-10 training: p = 0.12
  "edm_p012": (dict(p=0.12, **EDM_CIFAR10), 64, 32, 32, 3, 0),
  # every transform fires, large ones included (the padding reaches its clamp at W - 1)
  "edm_p1": (dict(p=1.0, **EDM_CIFAR10), 16, 32, 32, 3, 1),
  # larger than EDM's: the padding is clamped on every side, the sampler reads far outside the image
  "edm_p1_large": (dict(p=1.0, scale_std=0.6, translate_frac_std=0.3, **EDM_CIFAR10), 8, 32, 32, 3, 7),
  # one image zoomed out 1.8x, stretched 1.6x along x and squeezed along y (4.24- and 3.4-sigma
  # draws), turned by 11 degrees and moved: the padding is not clamped on three sides, and the
  # sampler reads where the reference's padded and upsampled image has zeros (or ends)
  "edm_extreme": (
    dict(p=1.0, **EDM_CIFAR10),
    1,
    32,
    32,
    3,
    8,
    {4: [-4.24], 6: [0.53], 8: [-3.4], 9: [0.5], 11: [0.99], 12: [[-1.25], [0.625]]},
  ),
  # every transform fires but they are small: the padding stays below its clamp
  "edm_p1_small": (
    dict(p=1.0, scale_std=0.05, rotate_frac_max=1 / 16, aniso_std=0.05, translate_frac_std=0.02, **EDM_CIFAR10),
    8,
    32,
    32,
    3,
    2,
  ),
  # p = 0: nothing fires, but the geometric resampling still runs
  "edm_p0": (dict(p=0.0, **EDM_CIFAR10), 4, 32, 32, 3, 3),
  # a non-square image
  "edm_rect_p1": (dict(p=1.0, **EDM_CIFAR10), 6, 16, 24, 3, 4),
  # the pixel blitting and colour transforms too
  "all_p05": (dict(p=0.5, **EVERYTHING), 16, 16, 16, 3, 5),
  "all_gray_p1": (dict(p=1.0, **EVERYTHING), 6, 16, 16, 1, 6),
}


def images(num: int, height: int, width: int, channels: int, seed: int) -> np.ndarray:
  """Smooth random patterns in [-1, 1], NHWC: sums of two plane waves per channel."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width]
  y, x = y / height, x / width
  out = np.zeros((num, height, width, channels))
  for i in range(num):
    for c in range(channels):
      for _ in range(2):
        fx, fy = rng.uniform(-4, 4, 2)
        out[i, :, :, c] += 0.5 * np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
  return out.astype(np.float32)


class Recorder:
  """Wraps torch.rand, torch.randn, torch.randint and torch.nn.functional.pad, keeping what they
  return (the random tensors) and the pad amounts, until `close`."""

  def __init__(self, overrides=None):
    self.overrides = overrides or {}
    self.kinds, self.draws, self.pads = [], [], []
    self.saved = {name: getattr(torch, name) for name in ("rand", "randn", "randint")}
    self.saved_pad = torch.nn.functional.pad
    for name in ("rand", "randn"):
      setattr(torch, name, self._wrap(name, self.saved[name]))
    randint = self.saved["randint"]

    def wrapped_randint(*args, **kwargs):
      assert len(args) == 2 and isinstance(args[0], int), "expected torch.randint(high, size)"
      return self._keep(f"randint{args[0]}", randint(*args, **kwargs))

    torch.randint = wrapped_randint

    def wrapped_pad(*args, **kwargs):
      pad = kwargs.get("pad", args[1] if len(args) > 1 else None)
      self.pads.append([int(p) for p in pad])
      return self.saved_pad(*args, **kwargs)

    torch.nn.functional.pad = wrapped_pad

  def _keep(self, kind, value):
    k = len(self.draws)
    if k in self.overrides:
      value = torch.as_tensor(np.asarray(self.overrides[k]).reshape(value.shape), dtype=value.dtype)
    self.kinds.append(kind)
    self.draws.append(value.detach().cpu().numpy().copy())
    return value

  def _wrap(self, name, fn):
    return lambda *args, **kwargs: self._keep(name, fn(*args, **kwargs))

  def close(self):
    for name, fn in self.saved.items():
      setattr(torch, name, fn)
    torch.nn.functional.pad = self.saved_pad


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--edm", required=True, help="a checkout of NVlabs/edm")
  parser.add_argument("--out", required=True)
  parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated names of RUNS")
  args = parser.parse_args()
  sys.path.insert(0, os.path.abspath(args.edm))
  from training.augment import AugmentPipe  # pylint: disable=g-import-not-at-top

  os.makedirs(args.out, exist_ok=True)
  for name in args.runs.split(","):
    kwargs, num, height, width, channels, seed = RUNS[name][:6]
    x = images(num, height, width, channels, seed)
    pipe = AugmentPipe(**kwargs)
    settings = {k: v for k, v in vars(pipe).items() if isinstance(v, float)}
    torch.manual_seed(seed)
    recorder = Recorder(RUNS[name][6] if len(RUNS[name]) > 6 else None)
    try:
      with torch.no_grad():
        out, labels = pipe(torch.from_numpy(x.transpose(0, 3, 1, 2)).contiguous())
    finally:
      recorder.close()
    assert len(recorder.pads) <= 1, recorder.pads
    left, right, top, bottom = recorder.pads[0] if recorder.pads else (-1, -1, -1, -1)
    np.savez(
      os.path.join(args.out, f"{name}.npz"),
      images=x,
      out=out.numpy().transpose(0, 2, 3, 1),
      labels=labels.numpy(),
      settings=json.dumps(settings),
      draw_kinds=np.asarray(recorder.kinds),
      pad_margin=np.asarray([left, top, right, bottom]),
      **{f"draw_{i}": d for i, d in enumerate(recorder.draws)},
    )
    print(f"{name}: {len(recorder.draws)} draws, padding {recorder.pads}, labels {tuple(labels.shape)}")


if __name__ == "__main__":
  main()
