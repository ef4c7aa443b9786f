"""pytorch-fid's own FID Inception-v3 graph on random weights, for checking genjax's Flax port
without the real weights (which cannot be downloaded here). For comparison only: nothing in genjax
imports it; it needs torch, torchvision and pytorch-fid (`pip install torch==2.14.1
torchvision==0.29.1 pytorch-fid`).

    python experiments/reference/torch_fid_inception.py --out DIR [--num 200] [--seed 0]

writes DIR/weights.pth (random weights, batch-norm statistics included, in the layout of
pytorch-fid's pt_inception-2015-12-05 file), DIR/images.npy (two sets of num 32x32x3 images at
8-bit levels in [-1, 1]), and DIR/torch.npz: pool3 features and the 1008 logits of every image as
pytorch-fid computes them (resize to 299 bilinear, 2x - 1, its FID blocks), and the FID between
the two sets from pytorch_fid.fid_score.calculate_frechet_distance.
tests/metrics/test_inception_vs_pytorch_fid.py runs it and compares genjax's numbers.
"""

import argparse
import os

import numpy as np
import torch
from pytorch_fid import fid_score
from pytorch_fid import inception as pi


def fid_inception_random(seed: int):
  """pytorch-fid's fid_inception_v3(), its FID blocks and all, with random weights instead of the
  downloaded ones (the network function is unchanged: only load_state_dict_from_url is skipped)."""
  torch.manual_seed(seed)
  net = pi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  net.Mixed_5b = pi.FIDInceptionA(192, pool_features=32)
  net.Mixed_5c = pi.FIDInceptionA(256, pool_features=64)
  net.Mixed_5d = pi.FIDInceptionA(288, pool_features=64)
  net.Mixed_6b = pi.FIDInceptionC(768, channels_7x7=128)
  net.Mixed_6c = pi.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6d = pi.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6e = pi.FIDInceptionC(768, channels_7x7=192)
  net.Mixed_7b = pi.FIDInceptionE_1(1280)
  net.Mixed_7c = pi.FIDInceptionE_2(2048)
  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial scales and shifts, so they are really read
        m.weight.uniform_(0.5, 1.5, generator=g)
        m.bias.normal_(0.0, 0.1, generator=g)
  return net


def calibrate(wrapper_net, net, x):
  """Sets every BatchNorm's running statistics to those of the batch x (one forward pass in train
  mode with a cumulative average). With statistics that do not match the activations, a random
  Inception's pool3 features hardly depend on the image, and any FID between two sets is ~1e-13."""
  for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.reset_running_stats()
      m.momentum = None
  wrapper_net.train()
  with torch.no_grad():
    wrapper_net(x)
  wrapper_net.eval()


def images(num: int, seed: int, max_frequency: float = 4.0) -> np.ndarray:
  """Smooth random colour patterns (not noise, so the network's features vary), 8-bit levels."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:32, 0:32] / 32.0
  out = []
  for _ in range(num):
    f = rng.uniform(0.5, max_frequency, (3, 2))
    phase = rng.uniform(0, 2 * np.pi, 3)
    out.append(np.stack([np.sin(2 * np.pi * (f[c, 0] * x + f[c, 1] * y) + phase[c]) for c in range(3)], -1))
  u8 = np.round((np.stack(out) + 1.0) * 127.5).clip(0, 255)
  return (u8 / 127.5 - 1.0).astype(np.float32)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", required=True)
  parser.add_argument("--num", type=int, default=200)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  net = fid_inception_random(args.seed)
  # two sets from different distributions (the second has finer patterns), so their FID is clearly > 0
  a, b = images(args.num, args.seed), images(args.num, args.seed + 1, max_frequency=8.0)
  np.save(os.path.join(args.out, "images.npy"), np.concatenate([a, b]))

  def to_torch(u):  # [0, 1] NCHW, as pytorch-fid reads
    return torch.from_numpy((u.transpose(0, 3, 1, 2) + 1.0) / 2.0)

  x = to_torch(np.concatenate([a, b]))
  feats, logits = [], []
  # pytorch-fid's InceptionV3 wrapper (its forward: resize to 299, 2x - 1, the four blocks up to
  # pool3) around our network: built without its __init__, which would download weights.
  wrapper_net = pi.InceptionV3.__new__(pi.InceptionV3)
  torch.nn.Module.__init__(wrapper_net)
  wrapper_net.resize_input, wrapper_net.normalize_input = True, True
  wrapper_net.output_blocks, wrapper_net.last_needed_block = [3], 3
  wrapper_net.blocks = torch.nn.ModuleList(
    [
      torch.nn.Sequential(
        net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, torch.nn.MaxPool2d(kernel_size=3, stride=2)
      ),
      torch.nn.Sequential(net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, torch.nn.MaxPool2d(kernel_size=3, stride=2)),
      torch.nn.Sequential(
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e
      ),
      torch.nn.Sequential(net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, torch.nn.AdaptiveAvgPool2d(output_size=(1, 1))),
    ]
  )
  calibrate(wrapper_net, net, to_torch(images(64, args.seed + 2, max_frequency=8.0)))
  torch.save(net.state_dict(), os.path.join(args.out, "weights.pth"))
  with torch.no_grad():
    for start in range(0, len(x), 50):
      pool = wrapper_net(x[start : start + 50])[0][:, :, 0, 0]
      feats.append(pool.numpy())
      logits.append(net.fc(pool).numpy())
  feats, logits = np.concatenate(feats).astype(np.float64), np.concatenate(logits)
  n = args.num
  stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (feats[:n], feats[n:])]
  fid = fid_score.calculate_frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
  np.savez(os.path.join(args.out, "torch.npz"), features=feats, logits=logits, fid=fid)
  print(f"features {feats.shape}, FID between the two sets {fid:.6f}")


if __name__ == "__main__":
  main()
