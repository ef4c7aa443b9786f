"""GPT-2 (124M parameters, and the larger shapes) on Tiny Shakespeare bytes: throughput and
memory benchmarks.

Sizes (Radford et al. 2019, Table 2): small (the default; experiments/gpt2_small.py is this file
with no argument), medium (24 layers, 16 heads, width 1024: 350M), large (36 layers, 20 heads,
width 1280: 774M). `python -m genjax.bench --memory` compiles medium and large on 8 simulated
devices to compare the per-device memory of replicated, FSDP and FSDP + tensor-parallel steps.

Results:   experiments/RESULTS.md, the "Not yet measured" table (GPT-2 small throughput and MFU).
Command:   python -m genjax.train --config experiments/gpt2.py[:medium|:large] --workdir runs/gpt2_small
           (tokens/s = steps_per_sec * 16 * 1024 in metrics.jsonl; `python -m genjax.bench` for MFU)
Hardware:  one accelerator (bfloat16, cuDNN flash attention on GPUs); its accelerator MFU remains
           to be measured (no accelerator was lent so far). On a 2-core CPU
           (`python -m genjax.bench --only gpt2_small --no-loop`, 2026-11-27): one sequence of 1024
           tokens per step, 6.6 s/step (154 tokens/s), MFU 0.51 of the measured bf16 matmul rate,
           first step after 22.1 s, sampling 46-49 ms/token whatever the length.
Runtime:   2000 steps of 16 x 1024 tokens (33M tokens).
Result:    a throughput figure, not a quality one: Tiny Shakespeare (1.1M bytes) is far too small
           for a 124M model, which will overfit it within a few epochs. For reference, nanoGPT's
           GPT-2 small reaches ~2.85 nats/token on OpenWebText (GPT-2 BPE), a different task.

Model: GPT-2 small's shape (Radford et al. 2019): 12 layers, 12 heads, width 768, block 1024,
GELU MLP, learned positions, biases, tied embeddings. The tokens are UTF-8 bytes (256 symbols),
but the embedding table keeps 50304 rows (GPT-2's 50257 padded to a multiple of 64, as nanoGPT
does), so the model has GPT-2 small's 124M parameters and FLOPs; the 50048 extra rows never
appear as targets and only cost compute. Optimizer as nanoGPT's train_gpt2: AdamW lr 6e-4,
b2 = 0.95, weight decay 0.1 (matmul weights and embeddings), warmup then cosine to 6e-5, clip 1.0.
"""

from genjax import config as C
from genjax.families import autoregressive

SIZES = {"small": (12, 12, 768), "medium": (24, 16, 1024), "large": (36, 20, 1280)}  # layers, heads, width


def get_config(arg: str = "small") -> C.Experiment:
  if arg not in SIZES:
    raise C.ConfigError(f"experiments/gpt2.py takes one of {', '.join(SIZES)}, got {arg!r}.")
  layers, heads, width = SIZES[arg]
  return C.Experiment(
    name=f"gpt2_{arg}",
    family="autoregressive",
    model=autoregressive.GPTConfig(
      num_layers=layers,
      num_heads=heads,
      width=width,
      dropout=0.0,
      use_bias=True,
      positions="learned",
      tie_embeddings=True,
      vocab_size=50304,
    ),
    data=C.Data(
      name="tiny_shakespeare", train_split="nanogpt_train", eval_split="nanogpt_val", block_size=1024, tokenizer="byte"
    ),
    optim=C.Optim(
      name="adamw",
      learning_rate=6e-4,
      b1=0.9,
      b2=0.95,
      weight_decay=0.1,
      schedule="warmup_cosine",
      warmup_steps=200,
      end_lr_ratio=0.1,
      grad_clip_norm=1.0,
    ),
    train=C.Train(
      steps=2000, batch_size=16, log_every=10, eval_every=500, checkpoint_every=1000, compute_dtype="bfloat16"
    ),
    eval=C.Eval(num_batches=4, batch_size=16, num_samples=4, sample_length=512),
  )
