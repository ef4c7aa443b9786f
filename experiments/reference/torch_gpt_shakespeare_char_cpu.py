"""An independent PyTorch implementation of nanoGPT's CPU shakespeare_char setting, for comparing
genjax's GPT with the framework nanoGPT runs on. Not part of genjax: nothing imports it, and it
needs `pip install torch` (not in requirements.txt).

Command:   python experiments/reference/torch_gpt_shakespeare_char_cpu.py SEED
           (reads $GENJAX_MANUAL_DIR/tiny_shakespeare/input.txt)
Hardware:  2-core CPU, ~1 minute per run when the machine is otherwise idle (torch 2.14.1).
Result:    experiments/RESULTS.md, the GPT `:cpu` row: whole-split validation loss 1.892-1.910 over
           four seeds, evaluated as `python -m genjax.evaluate` does.

The same model and training as `experiments/gpt_shakespeare_char.py:cpu`: 4 layers, 4 heads,
width 128, block 64, no biases, tied embeddings, GELU; weights N(0, 0.02), residual projections
N(0, 0.02 / sqrt(2 * layers)); AdamW (0.9, 0.99), weight decay 0.1 on every tensor of rank >= 2,
lr 1e-3 with 100 linear warmup steps and a cosine to 1e-4 at step 2000, clip 1.0, batch 12.
Validation: the whole last 10% in non-overlapping windows, and nanoGPT's 20-random-batch estimate.
"""

import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1337
torch.manual_seed(seed)
text = open(os.path.join(os.environ.get("GENJAX_MANUAL_DIR", "."), "tiny_shakespeare", "input.txt")).read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = np.array([stoi[c] for c in text], dtype=np.int64)
n = int(0.9 * len(data))
train, val = torch.from_numpy(data[:n]), torch.from_numpy(data[n:])
V, B, L, D, H, NL = len(chars), 12, 64, 128, 4, 4
steps, lr_max, lr_min, warm = 2000, 1e-3, 1e-4, 100


class Block(nn.Module):
  def __init__(s):
    super().__init__()
    s.ln1 = nn.LayerNorm(D, bias=False)
    s.qkv = nn.Linear(D, 3 * D, bias=False)
    s.proj = nn.Linear(D, D, bias=False)
    s.ln2 = nn.LayerNorm(D, bias=False)
    s.fc = nn.Linear(D, 4 * D, bias=False)
    s.out = nn.Linear(4 * D, D, bias=False)

  def forward(s, x):
    b, t, _ = x.shape
    q, k, v = s.qkv(s.ln1(x)).split(D, dim=2)
    q, k, v = (u.view(b, t, H, D // H).transpose(1, 2) for u in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, D)
    x = x + s.proj(y)
    return x + s.out(F.gelu(s.fc(s.ln2(x))))


class GPT(nn.Module):
  def __init__(s):
    super().__init__()
    s.wte = nn.Embedding(V, D)
    s.wpe = nn.Embedding(L, D)
    s.blocks = nn.ModuleList(Block() for _ in range(NL))
    s.lnf = nn.LayerNorm(D, bias=False)
    for m in s.modules():
      if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    for name, p in s.named_parameters():
      if name.endswith("proj.weight") or name.endswith("out.weight"):
        nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * NL))

  def forward(s, idx):
    x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1]))
    for blk in s.blocks:
      x = blk(x)
    return s.lnf(x) @ s.wte.weight.T


model = GPT()
decay = [p for p in model.parameters() if p.dim() >= 2]
nodecay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW(
  [{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}], lr=lr_max, betas=(0.9, 0.99)
)


def lr_at(it):
  if it < warm:
    return lr_max * (it + 1) / (warm + 1)
  r = (it - warm) / (steps - warm)
  return lr_min + 0.5 * (1 + math.cos(math.pi * r)) * (lr_max - lr_min)


def batch(split):
  d = train if split == "train" else val
  ix = torch.randint(len(d) - L, (B,))
  return torch.stack([d[i : i + L] for i in ix]), torch.stack([d[i + 1 : i + 1 + L] for i in ix])


@torch.no_grad()
def whole_val():
  model.eval()
  w = (len(val) - 1) // L
  tot, cnt = 0.0, 0
  for s0 in range(0, w, 128):
    idx = torch.arange(s0, min(s0 + 128, w)) * L
    x = torch.stack([val[i : i + L] for i in idx])
    y = torch.stack([val[i + 1 : i + 1 + L] for i in idx])
    tot += F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1), reduction="sum").item()
    cnt += y.numel()
  model.train()
  return tot / cnt


@torch.no_grad()
def est20():
  model.eval()
  out = np.mean(
    [F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1)).item() for x, y in (batch("val") for _ in range(20))]
  )
  model.train()
  return out


t0 = time.time()
for it in range(steps):
  for g in opt.param_groups:
    g["lr"] = lr_at(it)
  x, y = batch("train")
  loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
  opt.zero_grad(set_to_none=True)
  loss.backward()
  torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
  opt.step()
  if (it + 1) % 500 == 0:
    print(
      f"step {it + 1}: train {loss.item():.4f} whole-val {whole_val():.4f} est20 {est20():.4f} ({time.time() - t0:.0f}s)",
      flush=True,
    )
print(f"seed {seed}: whole-val {whole_val():.4f}; est20 x10: {np.mean([est20() for _ in range(10)]):.4f}")
