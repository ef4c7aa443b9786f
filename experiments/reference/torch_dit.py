"""facebookresearch/DiT's own models.py on a small model, for checking genjax's Flax port
(genjax/nn/dit.py) on the same weights. For comparison only: nothing in genjax imports it; it needs
torch, timm (which brings torchvision) and numpy, and a checkout of https://github.com/facebookresearch/DiT
(`pip install torch==2.14.1 torchvision==0.29.1 timm`).

    python experiments/reference/torch_dit.py --dit_dir DIT_CHECKOUT --out DIR [--seed 0]

writes, for a DiT of depth 2, width 64, 4 heads, patch 2 on 8x8x4 inputs with 10 classes and
learn_sigma (the reference's default class_dropout_prob 0.1, hence an 11-row label table):
  DIR/weights.npz  its state_dict, keyed by the reference's names (pos_embed included), after
                   DiT's own initialisation with the zero-initialised adaLN modulations, final
                   layer and biases and the small conditioning layers redrawn larger, so that the
                   output is not trivially zero and every layer moves it
  DIR/io.npz       x f32[B,8,8,4] (NHWC), t f32[B] (real times), y i64[B] (the null label 10
                   among them), out f32[B,8,8,8] (NHWC): the reference's forward pass in eval mode
  DIR/counts.json  for every model of DiT_models at 32x32x4 latents with 1000 classes and
                   learn_sigma: "total" (model.parameters(), the frozen pos_embed included),
                   "trainable" (requires_grad only) and "pos_embed" (its element count)
tests/nn/test_dit.py runs it and compares genjax's numbers.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--dit_dir", required=True, help="a checkout of facebookresearch/DiT (holds models.py)")
  parser.add_argument("--out", required=True)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--skip_counts", action="store_true", help="only the small model's weights and outputs")
  args = parser.parse_args()
  sys.path.insert(0, os.path.abspath(args.dit_dir))
  import models  # noqa: E402 - the reference's own module, from the checkout

  os.makedirs(args.out, exist_ok=True)
  torch.manual_seed(args.seed)
  net = models.DiT(
    input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4, num_classes=10, learn_sigma=True
  )
  g = torch.Generator().manual_seed(args.seed + 1)
  with torch.no_grad():
    # DiT's initialisation leaves the adaLN-Zero layers at zero (the output would be 0) and the
    # conditioning small (std 0.02): larger values, so that every layer, the timestep and the
    # label move the output well beyond float rounding.
    zeroed = [net.final_layer.linear, net.final_layer.adaLN_modulation[-1]]
    zeroed += [block.adaLN_modulation[-1] for block in net.blocks]
    for layer in zeroed:
      layer.weight.normal_(0.0, 0.1, generator=g)
      layer.bias.normal_(0.0, 0.3, generator=g)
    for layer in (net.t_embedder.mlp[0], net.t_embedder.mlp[2]):
      layer.weight.normal_(0.0, 0.1, generator=g)
    net.y_embedder.embedding_table.weight.normal_(0.0, 0.3, generator=g)
    # DiT zeroes every other bias too: give them values so that the mapping of each is tested.
    for name, p in net.named_parameters():
      if name.endswith("bias") and not torch.any(p):
        p.normal_(0.0, 0.1, generator=g)
  net.eval()
  np.savez(os.path.join(args.out, "weights.npz"), **{k: v.numpy() for k, v in net.state_dict().items()})

  B = 6
  x_NCHW = torch.randn(B, 4, 8, 8, generator=g)
  t_N = torch.tensor([0.0, 1.0, 17.5, 250.0, 612.25, 999.0])
  y_N = torch.tensor([0, 3, 9, 10, 5, 10])
  with torch.no_grad():
    out_NCHW = net(x_NCHW, t_N, y_N)
  np.savez(
    os.path.join(args.out, "io.npz"),
    x=x_NCHW.permute(0, 2, 3, 1).numpy(),
    t=t_N.numpy(),
    y=y_N.numpy(),
    out=out_NCHW.permute(0, 2, 3, 1).numpy(),
  )

  counts = {}
  if not args.skip_counts:
    for name, make in models.DiT_models.items():
      with torch.device("meta"):  # shapes only: nothing is allocated or initialised for real
        model = make(input_size=32, in_channels=4, num_classes=1000, learn_sigma=True)
      counts[name] = {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "pos_embed": model.pos_embed.numel(),
      }
      del model
  with open(os.path.join(args.out, "counts.json"), "w") as f:
    json.dump(counts, f, indent=1)
  print(f"wrote {args.out}: max |out| {out_NCHW.abs().max().item():.4f}, {len(counts)} parameter counts")


if __name__ == "__main__":
  main()
