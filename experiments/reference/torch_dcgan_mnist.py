"""An independent PyTorch implementation of experiments/dcgan_mnist.py, for comparison only.

It trains the same network (DCGAN-tensorflow's class-conditional MNIST generator and
discriminator) with the same settings (Adam 2e-4 / 0.5, batch 64, one D update then two G updates
with the same z and the real batch's labels, N(0, 0.02) weights, BN decay 0.9), on the same MNIST
training images, and writes 10,000 samples (labels 0, 1, ..., 9 in turn, the generator's running
BatchNorm statistics) for genjax's classifier to score. Nothing in genjax imports it; it needs
`pip install torch==2.13.0` (CPU) and the raw MNIST files (GENJAX_MANUAL_DIR, as genjax reads them).

    python experiments/reference/torch_dcgan_mnist.py --seed S --steps 3744 --out DIR
    python -m genjax.metrics.reference_stats --dataset mnist --split train --samples DIR/samples.npy

Layout differences that change nothing learned: NCHW tensors, so flattening orders features
differently; TF's "SAME" padding written out (asymmetric pads, a cropped transposed convolution);
biases kept before BatchNorm (BN cancels them; genjax drops them).
"""

import argparse
import gzip
import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

Z, K, B = 100, 10, 64  # latent size, classes, batch


def load_mnist(manual_dir: str):
  """MNIST train images (uint8 [N, 28, 28]) and labels from the raw IDX files TFDS downloads."""
  folder = os.path.join(manual_dir, "mnist") if os.path.isdir(os.path.join(manual_dir, "mnist")) else manual_dir
  with gzip.open(os.path.join(folder, "train-images-idx3-ubyte.gz")) as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
  with gzip.open(os.path.join(folder, "train-labels-idx1-ubyte.gz")) as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
  return images, labels


def label_maps(y, h, w):
  return F.one_hot(y, K).float()[:, :, None, None].expand(-1, K, h, w)


class SameDeconv(nn.Module):
  """TF conv2d_transpose with "SAME" padding, stride 2, 5x5, to twice the input size."""

  def __init__(self, cin, cout, bias=True):
    super().__init__()
    self.deconv = nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=1, bias=bias)

  def forward(self, x):
    return self.deconv(x)[:, :, :-1, :-1]  # full rows 1 .. 2n of the (2n + 3)-row output


class SameConv(nn.Module):
  """TF conv2d with "SAME" padding, stride 2, 5x5 (pads 1 before, 2 after on even sizes)."""

  def __init__(self, cin, cout):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, 5, stride=2)

  def forward(self, x):
    return self.conv(F.pad(x, (1, 2, 1, 2)))


class Generator(nn.Module):
  def __init__(self):
    super().__init__()
    self.fc0, self.bn0 = nn.Linear(Z + K, 1024), nn.BatchNorm1d(1024, momentum=0.1, eps=1e-5)
    self.fc1, self.bn1 = nn.Linear(1024 + K, 7 * 7 * 128), nn.BatchNorm1d(7 * 7 * 128, momentum=0.1, eps=1e-5)
    self.dc2, self.bn2 = SameDeconv(128 + K, 128), nn.BatchNorm2d(128, momentum=0.1, eps=1e-5)
    self.dc3 = SameDeconv(128 + K, 1)

  def forward(self, z, y):
    onehot = F.one_hot(y, K).float()
    h = F.relu(self.bn0(self.fc0(torch.cat([z, onehot], 1))))
    h = F.relu(self.bn1(self.fc1(torch.cat([h, onehot], 1)))).view(-1, 128, 7, 7)
    h = F.relu(self.bn2(self.dc2(torch.cat([h, label_maps(y, 7, 7)], 1))))
    return torch.sigmoid(self.dc3(torch.cat([h, label_maps(y, 14, 14)], 1)))  # [0, 1] images


class Discriminator(nn.Module):
  def __init__(self):
    super().__init__()
    self.c0 = SameConv(1 + K, 1 + K)
    self.c1, self.bn1 = SameConv(1 + K + K, 64 + K), nn.BatchNorm2d(64 + K, momentum=0.1, eps=1e-5)
    self.fc2, self.bn2 = nn.Linear(7 * 7 * (64 + K) + K, 1024), nn.BatchNorm1d(1024, momentum=0.1, eps=1e-5)
    self.fc3 = nn.Linear(1024 + K, 1)

  def forward(self, x, y):
    onehot = F.one_hot(y, K).float()
    h = F.leaky_relu(self.c0(torch.cat([x, label_maps(y, 28, 28)], 1)), 0.2)
    h = F.leaky_relu(self.bn1(self.c1(torch.cat([h, label_maps(y, 14, 14)], 1))), 0.2)
    h = F.leaky_relu(self.bn2(self.fc2(torch.cat([h.flatten(1), onehot], 1))), 0.2)
    return self.fc3(torch.cat([h, onehot], 1))[:, 0]


def init_weights(module):
  for m in module.modules():
    if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
      nn.init.normal_(m.weight, 0.0, 0.02)
      nn.init.zeros_(m.bias)


def batch_indices(step: int, n: int, seed: int) -> np.ndarray:
  """Examples of step `step`: global example g = step * B + i is position g % n of epoch g // n's
  permutation (every example once per epoch, batches crossing epoch boundaries)."""
  g = step * B + np.arange(B)
  out = np.empty(B, np.int64)
  for epoch in np.unique(g // n):
    sel = g // n == epoch
    out[sel] = np.random.default_rng([seed, int(epoch)]).permutation(n)[g[sel] % n]
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=3744)
  parser.add_argument("--out", required=True)
  parser.add_argument("--samples", type=int, default=10_000)
  parser.add_argument("--manual_dir", default=os.environ.get("GENJAX_MANUAL_DIR", "../shared/data"))
  args = parser.parse_args()
  torch.manual_seed(args.seed)
  images, labels = load_mnist(args.manual_dir)
  images = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]  # [0, 1], as the reference
  labels = torch.from_numpy(labels)
  G, D = Generator(), Discriminator()
  init_weights(G)
  init_weights(D)
  opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
  opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
  bce = nn.BCEWithLogitsLoss()
  ones, zeros = torch.ones(B), torch.zeros(B)
  os.makedirs(args.out, exist_ok=True)
  start, log = time.time(), open(os.path.join(args.out, "losses.txt"), "w")
  for step in range(args.steps):
    idx = torch.from_numpy(batch_indices(step, len(images), args.seed))
    x, y = images[idx], labels[idx]
    z = torch.rand(B, Z) * 2 - 1
    d_loss = bce(D(x, y), ones) + bce(D(G(z, y).detach(), y), zeros)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    for _ in range(2):  # DCGAN-tensorflow runs g_optim twice per batch, with the same z
      g_loss = bce(D(G(z, y), y), ones)
      opt_g.zero_grad()
      g_loss.backward()
      opt_g.step()
    if (step + 1) % 100 == 0 or step + 1 == args.steps:
      print(
        f"step {step + 1} d_loss {d_loss.item():.4f} g_loss {g_loss.item():.4f} ({time.time() - start:.0f} s)",
        file=log,
        flush=True,
      )
  train_seconds = time.time() - start
  G.eval()
  with torch.no_grad():
    out = []
    for s in range(0, args.samples, 500):
      y = torch.arange(s, min(s + 500, args.samples)) % K
      out.append(G(torch.rand(len(y), Z) * 2 - 1, y).numpy())
  samples = np.concatenate(out).transpose(0, 2, 3, 1) * 2.0 - 1.0  # NHWC in [-1, 1], as genjax's
  np.save(os.path.join(args.out, "samples.npy"), samples.astype(np.float32))
  print(f"trained {args.steps} steps in {train_seconds:.0f} s; wrote {len(samples)} samples to {args.out}")


if __name__ == "__main__":
  main()
