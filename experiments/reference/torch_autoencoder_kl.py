"""diffusers' own AutoencoderKL (Stable Diffusion's VAE) on random weights, for checking genjax's
Flax port (genjax/nn/autoencoder_kl.py) without the real weights (which cannot be downloaded here).
For comparison only: nothing in genjax imports it; it needs torch, diffusers and safetensors
(`pip install torch diffusers safetensors`; checked with torch 2.13.0, diffusers 0.42.1, safetensors 0.8.0).

    python experiments/reference/torch_autoencoder_kl.py --out DIR [--seed 0] [--skip_kl_f8]

writes, for a small AutoencoderKL (block_out_channels (32, 64, 64), layers_per_block 1,
norm_num_groups 8, latent_channels 4: downsampling factor 4) with random weights (GroupNorm
scales and shifts drawn too, so that they are really read):
  DIR/small.safetensors       its state_dict in diffusers' layout (safetensors.torch.save_file)
  DIR/small_ldm.safetensors   the same tensors in the original CompVis/LDM layout (the mid-block
                              attention as 1x1 convs [C, C, 1, 1], decoder levels numbered from the
                              narrowest), plus a `loss.logvar` as LDM's training checkpoints hold;
                              the renaming is checked by diffusers' own convert_ldm_vae_checkpoint,
                              which must give back the state_dict exactly
  DIR/small_sd.safetensors    those under `first_stage_model.` beside other models' tensors, as in
                              a full SD checkpoint
  DIR/small.npz               for each size S in 32x32 and 48x64: x_S f32[2,H,W,3] in [-1, 1],
                              mean_S and logvar_S (latent_dist's moments), z_S (random latents),
                              dec_S = decode(z_S), recon_S = forward(x_S, sample_posterior=False); NHWC
and for SD's own KL-f8 config (unless --skip_kl_f8): DIR/kl_f8.safetensors and DIR/kl_f8.npz (the
same arrays at 16x16), and DIR/counts.json with both models' parameter counts.
tests/nn/test_autoencoder_kl.py runs it and compares genjax's numbers.
"""

import argparse
import json
import os
import re

import numpy as np
import safetensors.torch
import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

SMALL = dict(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8, latent_channels=4)
KL_F8 = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, latent_channels=4)

# diffusers name fragment -> the original's (applied in order, before the level renumbering)
_TO_LDM = [
  (r"mid_block\.resnets\.0\.", "mid.block_1."),
  (r"mid_block\.resnets\.1\.", "mid.block_2."),
  (r"mid_block\.attentions\.0\.group_norm\.", "mid.attn_1.norm."),
  (r"mid_block\.attentions\.0\.to_q\.", "mid.attn_1.q."),
  (r"mid_block\.attentions\.0\.to_k\.", "mid.attn_1.k."),
  (r"mid_block\.attentions\.0\.to_v\.", "mid.attn_1.v."),
  (r"mid_block\.attentions\.0\.to_out\.0\.", "mid.attn_1.proj_out."),
  (r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block."),
  (r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample."),
  (r"conv_shortcut", "nin_shortcut"),
  (r"conv_norm_out", "norm_out"),
]


def build(config: dict, seed: int) -> AutoencoderKL:
  torch.manual_seed(seed)
  n = len(config["block_out_channels"])
  net = AutoencoderKL(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * n,
    up_block_types=("UpDecoderBlock2D",) * n,
    act_fn="silu",
    sample_size=512,
    scaling_factor=0.18215,
    **config,
  ).eval()
  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.GroupNorm):
        m.weight.uniform_(0.5, 1.5, generator=g)
        m.bias.normal_(0.0, 0.2, generator=g)
  return net


def to_ldm(state_dict: dict, num_levels: int) -> dict:
  """diffusers' state_dict -> the original CompVis/LDM one (written here independently of genjax)."""
  out = {}
  for key, value in state_dict.items():
    new = key
    for pattern, repl in _TO_LDM:
      new = re.sub(pattern, repl, new)
    up = re.search(r"up_blocks\.(\d+)\.(resnets|upsamplers\.0)\.", new)
    if up:
      part = "block" if up[2] == "resnets" else "upsample"
      new = new.replace(up[0], f"up.{num_levels - 1 - int(up[1])}.{part}.")
    if ".attn_1." in new and value.ndim == 2:  # the original's attention layers are 1x1 convs
      value = value[:, :, None, None]
    out[new] = value.contiguous()
  return out


def run(net: AutoencoderKL, sizes, seed: int) -> dict:
  rng = np.random.default_rng(seed)
  f = 2 ** (len(net.config.block_out_channels) - 1)
  out = {}
  for h, w in sizes:
    s = f"{h}x{w}"
    x = rng.uniform(-1.0, 1.0, (2, h, w, 3)).astype(np.float32)
    z = rng.normal(size=(2, h // f, w // f, net.config.latent_channels)).astype(np.float32)
    nchw = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy())
    nhwc = lambda t: t.numpy().transpose(0, 2, 3, 1)
    with torch.no_grad():
      dist = net.encode(nchw(x)).latent_dist
      out[f"x_{s}"], out[f"z_{s}"] = x, z
      out[f"mean_{s}"], out[f"logvar_{s}"] = nhwc(dist.mean), nhwc(dist.logvar)
      out[f"dec_{s}"] = nhwc(net.decode(nchw(z)).sample)
      out[f"recon_{s}"] = nhwc(net(nchw(x), sample_posterior=False).sample)
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", required=True)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--skip_kl_f8", action="store_true", help="only the small model")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  counts = {}

  net = build(SMALL, args.seed)
  sd = {k: v.contiguous() for k, v in net.state_dict().items()}
  counts["small"] = sum(p.numel() for p in net.parameters())
  safetensors.torch.save_file(sd, os.path.join(args.out, "small.safetensors"), metadata={"format": "pt"})
  ldm = to_ldm(sd, len(SMALL["block_out_channels"]))
  back = convert_ldm_vae_checkpoint(ldm, dict(net.config))  # diffusers reads our LDM layout back exactly
  assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd), "to_ldm disagrees with diffusers"
  assert any(v.ndim == 4 and ".attn_1." in k for k, v in ldm.items())
  safetensors.torch.save_file({**ldm, "loss.logvar": torch.zeros(())}, os.path.join(args.out, "small_ldm.safetensors"))
  full = {f"first_stage_model.{k}": v for k, v in ldm.items()}
  full["model.diffusion_model.input_blocks.0.0.weight"] = torch.randn(8, 4, 3, 3)
  full["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
  safetensors.torch.save_file(full, os.path.join(args.out, "small_sd.safetensors"))
  io = run(net, [(32, 32), (48, 64)], args.seed + 2)
  np.savez(os.path.join(args.out, "small.npz"), **io)
  print("small:", {k: f"std {v.std():.3f}" for k, v in io.items() if not k.startswith(("x_", "z_"))})

  if not args.skip_kl_f8:
    net = build(KL_F8, args.seed + 10)
    counts["kl_f8"] = sum(p.numel() for p in net.parameters())
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    safetensors.torch.save_file(sd, os.path.join(args.out, "kl_f8.safetensors"), metadata={"format": "pt"})
    io = run(net, [(16, 16)], args.seed + 12)
    np.savez(os.path.join(args.out, "kl_f8.npz"), **io)
    print("kl_f8:", {k: f"std {v.std():.3f}" for k, v in io.items() if not k.startswith(("x_", "z_"))})
  with open(os.path.join(args.out, "counts.json"), "w") as f:
    json.dump(counts, f)
  print("parameters:", counts)


if __name__ == "__main__":
  main()
