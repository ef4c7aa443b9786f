"""Character-level GPT on Tiny Shakespeare: nanoGPT's `shakespeare_char` model.

Results:   experiments/RESULTS.md, the two GPT rows (":cpu" measured; full run not yet).
Command:   python -m genjax.train --config experiments/gpt_shakespeare_char.py --workdir runs/gpt_shakespeare_char
           python -m genjax.sample --workdir runs/gpt_shakespeare_char --num 4 --out shakespeare.txt \
               --prompt "ROMEO:" --length 250 --temperature 0.8 --top_k 200
           The CPU variant (nanoGPT's "I only have a MacBook" settings):
           python -m genjax.train --config experiments/gpt_shakespeare_char.py:cpu --workdir runs/gpt_shakespeare_char_cpu
           The CPU variant as a Llama (below), with AdamW and with Muon:
           python -m genjax.train --config experiments/gpt_shakespeare_char.py:llama_cpu --workdir runs/shakespeare_llama_cpu
           python -m genjax.train --config experiments/gpt_shakespeare_char.py:llama_muon_cpu --workdir runs/shakespeare_llama_muon_cpu
Hardware:  full: one accelerator (bfloat16; nanoGPT: ~3 minutes on one A100). Not run here: the
           machine this was written on has no accelerator. cpu: a 2-core CPU.
Runtime:   cpu: 1 min 32 s for 2000 steps of 12 x 64 tokens (~27 steps/s, ~21,000 tokens/s), as
           two CPU devices (parallel.cpu_devices=2), on an otherwise idle 2-core CPU (2026-11-28;
           1 min 53 s as one device). nanoGPT on the same machine: ~38-41 ms per step against
           genjax's ~36 (`python -m genjax.bench --nanogpt ...`, experiments/RESULTS.md).
Result:    full: nanoGPT (karpathy/nanoGPT README, config/train_shakespeare_char.py) reports a best
           validation loss of 1.4697 nats/char after 5000 iterations; the target here is the same
           (<= ~1.47). Not yet run (needs an accelerator).
           cpu: nanoGPT reports ~1.88 (one run, a 20-batch estimate). Measured here on the whole
           nanogpt_val split after 2000 steps (`python -m genjax.evaluate`, 2026-11-27):
           1.919 / 1.894 / 1.908 nats/char for train.seed 0 / 1 / 2 (mean 1.907). An independent
           PyTorch implementation of the same setting, evaluated the same way, gave 1.892-1.910
           over four seeds (mean 1.901): the setting itself lands at 1.89-1.92, and 1.88 is its
           lucky tail. With --config.optim.learning_rate=2e-3 (everything else unchanged) the same
           model reaches 1.823 / 1.792 / 1.800 (seeds 0 / 1 / 2; experiments/RESULTS.md).

Model: 6 layers, 6 heads, width 384 (10.75M parameters; 10.65M without the position table, as
nanoGPT counts), block 256, dropout 0.2, no biases, learned positions, tied embeddings, LayerNorm
epsilon 1e-5. AdamW (b2 = 0.99, weight decay 0.1 on the matmul weights and the embeddings: nanoGPT
decays every tensor of rank >= 2), lr 1e-3 with 100 warmup steps and a cosine decay to 1e-4 at
5000 steps, gradients clipped at norm 1, batch 64 x 256 characters.
llama_cpu: the cpu variant (same width, layers, heads, block, batch, steps and AdamW schedule)
made a Llama: RMSNorm, a SwiGLU MLP of hidden width 344 (Llama's two thirds of 4 x 128, rounded up
to a multiple of 8 rather than Llama's 256, which would make it 512), rotary positions (base
10000) instead of the position table, no biases, multi-head attention (4 heads of 32; at this size
Llama 3's 4:1 grouping would leave one key/value head). Embeddings tied, as the cpu variant's and
Llama 3.2 1B's are, so that only the block changes: 800,000 parameters against the cpu
variant's 804,096 (of which 8,192 are its position table). llama_muon_cpu: the same with
optim.name "muon": Muon (lr 0.02 on the same warmup-cosine shape, momentum 0.95, Nesterov, 5
Newton-Schulz steps: Keller Jordan's defaults) for the attention and MLP matrices, the AdamW
above for the embedding and the norm scales. Results (experiments/RESULTS.md, 2026-12-05, three
seeds each, 2000 steps, two CPU devices): validation loss 1.907 (:cpu), 1.671 (:llama_cpu) and
1.607 (:llama_muon_cpu), at 30.8, 32.6 and 64.8 ms per step: :llama_cpu is the documented
alternative of the CPU variant (best loss per second on this CPU; Muon is best per step).
Data: the `nanogpt_train` / `nanogpt_val` splits are nanoGPT's 90/10 cut of input.txt, with its
65-character vocabulary. Validation here walks the whole validation split in non-overlapping
windows (nanoGPT averages 200 random batches); both average the loss over every position.
"""

import dataclasses

from genjax import config as C
from genjax.families import autoregressive


def get_config(arg=None) -> C.Experiment:
  exp = C.Experiment(
    name="gpt_shakespeare_char",
    family="autoregressive",
    model=autoregressive.GPTConfig(
      num_layers=6, num_heads=6, width=384, dropout=0.2, use_bias=False, positions="learned", tie_embeddings=True
    ),
    data=C.Data(
      name="tiny_shakespeare", train_split="nanogpt_train", eval_split="nanogpt_val", block_size=256, tokenizer="char"
    ),
    optim=C.Optim(
      name="adamw",
      learning_rate=1e-3,
      b1=0.9,
      b2=0.99,
      weight_decay=0.1,
      schedule="warmup_cosine",
      warmup_steps=100,
      end_lr_ratio=0.1,
      grad_clip_norm=1.0,
    ),
    train=C.Train(
      steps=5000, batch_size=64, log_every=10, eval_every=250, checkpoint_every=1000, compute_dtype="bfloat16"
    ),
    # 7 batches of 64 windows of 256 characters cover the 111,540-character validation split.
    eval=C.Eval(num_batches=7, batch_size=64, num_samples=4, sample_length=255),
  )
  if arg in ("cpu", "llama_cpu", "llama_muon_cpu"):
    exp = _cpu(exp)
  elif arg is not None:
    raise ValueError(
      f"experiments/gpt_shakespeare_char.py takes no argument, 'cpu', 'llama_cpu' or 'llama_muon_cpu', got {arg!r}."
    )
  if arg in ("llama_cpu", "llama_muon_cpu"):
    exp = _llama(exp, muon=arg == "llama_muon_cpu")
  return exp


def _cpu(exp: C.Experiment) -> C.Experiment:
  # nanoGPT README: --device=cpu --compile=False --eval_iters=20 --log_interval=1
  # --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
  # --lr_decay_iters=2000 --dropout=0.0  (its learning rate stays 1e-3 decaying to 1e-4).
  return dataclasses.replace(
    exp,
    name="gpt_shakespeare_char_cpu",
    model=dataclasses.replace(exp.model, num_layers=4, num_heads=4, width=128, dropout=0.0),
    data=dataclasses.replace(exp.data, block_size=64),
    train=dataclasses.replace(
      exp.train,
      steps=2000,
      batch_size=12,
      log_every=50,
      eval_every=500,
      checkpoint_every=500,
      compute_dtype="float32",
    ),
    # 14 batches of 128 windows of 64 characters cover the validation split (1742 windows).
    eval=C.Eval(num_batches=14, batch_size=128, num_samples=4, sample_length=63),
    # Data parallel over a 2-core CPU's cores (6 windows each): ~37 ms per step against ~50 as
    # one device using both cores' threads, the same losses (experiments/RESULTS.md, CPU speed).
    parallel=dataclasses.replace(exp.parallel, cpu_devices=2),
  )


def _llama(exp: C.Experiment, muon: bool) -> C.Experiment:
  """The cpu variant as a Llama (the module docstring says why each choice), optionally with Muon."""
  model = dataclasses.replace(
    exp.model, norm="rmsnorm", mlp="swiglu", mlp_hidden=344, positions="rotary", use_bias=False, tie_embeddings=True
  )
  optim = exp.optim
  if muon:
    optim = dataclasses.replace(optim, name="muon", muon_learning_rate=0.02, muon_momentum=0.95, muon_ns_steps=5)
  name = "gpt_shakespeare_char_llama_muon_cpu" if muon else "gpt_shakespeare_char_llama_cpu"
  return dataclasses.replace(exp, name=name, model=model, optim=optim)
