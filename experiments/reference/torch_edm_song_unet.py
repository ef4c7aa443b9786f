"""EDM's own SongUNet (NVlabs/edm training/networks.py) on random weights, for checking genjax's
Flax port (genjax/nn/song_unet.py). For comparison only: nothing in genjax imports it; it needs
torch and a checkout of https://github.com/NVlabs/edm (its training/ and torch_utils/ folders).

    python experiments/reference/torch_edm_song_unet.py --edm EDM_DIR --out DIR [--seed 0]

writes DIR/counts.json (the parameter counts of EDM's four CIFAR-10 networks as its train.py
builds them: ddpmpp and ncsnpp, unconditional and with label_dim 10, all with augment_dim 9, and
of the small networks below), and for each small network NAME (see SMALL):
  DIR/NAME_config.json   its SongUNet keyword arguments,
  DIR/NAME_weights.npz   its state_dict (parameters and buffers), keyed by the state_dict's names,
                         with every parameter redrawn at random (EDM's near-zero initialisation of
                         the last layers would hide most of the network from the comparison),
  DIR/NAME_io.npz        x (NHWC), t (noise labels), label (class indices, label_dim meaning "no
                         label", i.e. the zero one-hot), augment (augment labels), out (NHWC).
tests/nn/test_song_unet.py runs it and compares genjax's module on the same weights.
"""

import argparse
import json
import os
import sys

import numpy as np

# EDM's train.py: the two CIFAR-10 architectures (dropout 0.13 and augment_dim 9 with its
# augmentation pipe; defaults otherwise).
CIFAR10 = {
  "ddpmpp": dict(
    embedding_type="positional",
    encoder_type="standard",
    decoder_type="standard",
    channel_mult_noise=1,
    resample_filter=[1, 1],
    model_channels=128,
    channel_mult=[2, 2, 2],
  ),
  "ncsnpp": dict(
    embedding_type="fourier",
    encoder_type="residual",
    decoder_type="standard",
    channel_mult_noise=2,
    resample_filter=[1, 3, 3, 1],
    model_channels=128,
    channel_mult=[2, 2, 2],
  ),
}

# Small networks whose outputs are compared: the two CIFAR-10 variants shrunk, class- and
# augmentation-conditioned, and one with the "skip" encoder and decoder that neither uses.
_SMALL = dict(img_resolution=16, in_channels=3, out_channels=3, model_channels=32, num_blocks=1, attn_resolutions=[8])
SMALL = {
  "ddpmpp_small": {
    **CIFAR10["ddpmpp"],
    **_SMALL,
    "channel_mult": [1, 2],
    "label_dim": 10,
    "augment_dim": 9,
    "dropout": 0.13,
  },
  "ncsnpp_small": {
    **CIFAR10["ncsnpp"],
    **_SMALL,
    "channel_mult": [1, 2],
    "label_dim": 10,
    "augment_dim": 9,
    "dropout": 0.13,
  },
  "skip_small": {
    **CIFAR10["ncsnpp"],
    **_SMALL,
    "embedding_type": "positional",
    "channel_mult_noise": 1,
    "encoder_type": "skip",
    "decoder_type": "skip",
    "channel_mult": [1, 2, 2],
    "out_channels": 2,
  },
}


def randomize(net, generator):
  """Redraws every parameter: weights N(0, 1/fan_in), GroupNorm scales 1 + N(0, 0.2^2), biases
  N(0, 0.2^2). Buffers (resample filters, Fourier frequencies) are kept."""
  import torch

  with torch.no_grad():
    for name, p in net.named_parameters():
      z = torch.randn(p.shape, generator=generator)
      if p.ndim >= 2:
        p.copy_(z / np.sqrt(np.prod(p.shape[1:])))
      elif name.endswith("weight"):  # GroupNorm
        p.copy_(1.0 + 0.2 * z)
      else:
        p.copy_(0.2 * z)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--edm", required=True, help="a checkout of NVlabs/edm")
  parser.add_argument("--out", required=True)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  sys.path.insert(0, os.path.abspath(args.edm))
  import torch
  from training.networks import SongUNet

  os.makedirs(args.out, exist_ok=True)
  count = lambda net: sum(p.numel() for p in net.parameters())
  counts = {}
  for arch, kwargs in CIFAR10.items():
    for label_dim in (0, 10):
      with torch.device("meta"):  # shapes only: nothing is drawn or allocated
        net = SongUNet(
          img_resolution=32, in_channels=3, out_channels=3, label_dim=label_dim, augment_dim=9, dropout=0.13, **kwargs
        )
      counts[f"{arch}_{'cond' if label_dim else 'uncond'}"] = count(net)

  for name, kwargs in SMALL.items():
    torch.manual_seed(args.seed)
    net = SongUNet(**kwargs).eval()
    randomize(net, torch.Generator().manual_seed(args.seed + 1))
    counts[name] = count(net)
    rng = np.random.default_rng(args.seed + 2)
    B, R, C = 3, kwargs["img_resolution"], kwargs["in_channels"]
    x = rng.standard_normal((B, R, R, C)).astype(np.float32)
    t = np.array([-0.8, 0.1, 0.9], np.float32)  # EDM's c_noise: ln(sigma) / 4 and the like
    label_dim, augment_dim = kwargs.get("label_dim", 0), kwargs.get("augment_dim", 0)
    label = np.array([3, label_dim, 7][:B], np.int64) if label_dim else np.zeros(B, np.int64)
    augment = rng.standard_normal((B, augment_dim)).astype(np.float32) if augment_dim else None
    onehot = torch.nn.functional.one_hot(torch.from_numpy(label), label_dim + 1)[:, :label_dim].float()
    with torch.no_grad():
      out = net(
        torch.from_numpy(x.transpose(0, 3, 1, 2)),
        torch.from_numpy(t),
        onehot if label_dim else None,
        torch.from_numpy(augment) if augment_dim else None,
      )
    out = out.numpy().transpose(0, 2, 3, 1)
    np.savez(os.path.join(args.out, f"{name}_weights.npz"), **{k: v.numpy() for k, v in net.state_dict().items()})
    io = dict(x=x, t=t, label=label.astype(np.int32), out=out)
    if augment_dim:
      io["augment"] = augment
    np.savez(os.path.join(args.out, f"{name}_io.npz"), **io)
    with open(os.path.join(args.out, f"{name}_config.json"), "w") as f:
      json.dump(kwargs, f)
    print(f"{name}: {counts[name]} parameters, output std {out.std():.3f}")
  with open(os.path.join(args.out, "counts.json"), "w") as f:
    json.dump(counts, f, indent=1)
  print(json.dumps(counts))


if __name__ == "__main__":
  main()
