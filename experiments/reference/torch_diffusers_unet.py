"""The PyTorch side of `python -m genjax.bench --diffusers`: Hugging Face diffusers' UNet2DModel
built in the shape of a genjax DDPM U-Net, trained for some steps on one synthetic batch with the
step genjax's diffusion family takes (epsilon MSE at a uniform time step, gradient clipping, Adam,
an EMA of the weights), and the median milliseconds per step.

Run with a Python that has torch and diffusers (kept out of genjax's requirements):

    python experiments/reference/torch_diffusers_unet.py --spec '{"ch": 32, ...}' --steps 30

The spec holds genjax's diffusion.Config fields that shape the network (ch, ch_mult,
num_res_blocks, attn_resolutions, dropout, num_classes), the image shape, the batch and the
optimiser's figures; it prints one JSON line: parameters, ms per step (the mean and the median over
the steps after `--warmup`), the last loss, torch's version and threads; `--profile N` first prints
torch.profiler's table of operators over N more steps (run it under `taskset -c 0` beside
`python -m genjax.profile` to compare where each step's time goes). The mapping to UNet2DModel is the one
diffusers uses for DDPM's own CIFAR-10 checkpoint (google/ddpm-cifar10-32): DownBlock2D /
AttnDownBlock2D per level by whether its feature size attends, one attention head over all
channels, GroupNorm(32) with eps 1e-6, the sinusoidal embedding without sin/cos flip and shift 1,
a (num_classes + 1)-row label embedding added to the time embedding as genjax's null-label scheme.
"""

import argparse
import json
import statistics
import time

import torch


def build(spec):
  from diffusers import UNet2DModel

  H, W, C = spec["image_shape"]
  widths = [spec["ch"] * m for m in spec["ch_mult"]]
  sizes = [H // 2**level for level in range(len(widths))]
  attends = [s in spec["attn_resolutions"] for s in sizes]
  num_classes = spec.get("num_classes")
  return UNet2DModel(
    sample_size=H,
    in_channels=C,
    out_channels=C,
    block_out_channels=widths,
    layers_per_block=spec["num_res_blocks"],
    down_block_types=["AttnDownBlock2D" if a else "DownBlock2D" for a in attends],
    up_block_types=["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)],
    attention_head_dim=None,
    norm_num_groups=32,
    norm_eps=1e-6,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    dropout=spec["dropout"],
    num_class_embeds=None if num_classes is None else num_classes + 1,
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--spec", required=True, help="JSON: the network, image shape, batch and optimiser")
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
  parser.add_argument(
    "--profile",
    type=int,
    default=0,
    help="then N more steps under torch.profiler: its table of operators by self CPU time, per step",
  )
  args = parser.parse_args()
  spec = json.loads(args.spec)
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = build(spec)
  params = sum(p.numel() for p in model.parameters())
  ema = [p.detach().clone() for p in model.parameters()]
  opt = torch.optim.Adam(model.parameters(), lr=spec["learning_rate"], betas=(0.9, 0.999), eps=1e-8)
  T = spec.get("timesteps", 1000)
  betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
  alphas_cumprod = torch.cumprod(1 - betas, 0).float()
  B, (H, W, C) = spec["batch_size"], spec["image_shape"]
  x0 = torch.rand(B, C, H, W) * 2 - 1
  labels = torch.randint(0, spec.get("num_classes") or 1, (B,))
  model.train()

  def take_step():
    t = torch.randint(0, T, (B,))
    noise = torch.randn_like(x0)
    ab = alphas_cumprod[t].view(B, 1, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    out = model(xt, t, class_labels=labels if spec.get("num_classes") else None).sample
    loss_t = torch.mean((out - noise) ** 2)
    opt.zero_grad(set_to_none=True)
    loss_t.backward()
    if spec.get("grad_clip_norm"):
      torch.nn.utils.clip_grad_norm_(model.parameters(), spec["grad_clip_norm"])
    opt.step()
    with torch.no_grad():
      torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - spec.get("ema_decay", 0.9999))
    return loss_t.item()

  times, loss = [], float("nan")
  for step in range(args.warmup + args.steps):
    t0 = time.perf_counter()
    loss = take_step()
    if step >= args.warmup:
      times.append(time.perf_counter() - t0)
  if args.profile:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
      for _ in range(args.profile):
        take_step()
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=25))
    print(f"self CPU time per step: {sum(e.self_cpu_time_total for e in events) / 1e3 / args.profile:.1f} ms")
  print(
    json.dumps(
      {
        "params": params,
        "ms_per_step": 1e3 * statistics.fmean(times),
        "median_ms_per_step": 1e3 * statistics.median(times),
        "steps": len(times),
        "last_loss": loss,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
      }
    )
  )


if __name__ == "__main__":
  main()
