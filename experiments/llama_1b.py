"""Llama 3.2 1B's architecture (1.24B parameters) on Tiny Shakespeare bytes: a throughput and MFU
benchmark of a published Llama-shaped model on one GPU.

Results:   not yet measured (no accelerator was lent when this was written).
Command:   python -m genjax.bench --only llama_1b --dtype bfloat16 --no-loop   (tokens/s, MFU, memory)
           python -m genjax.reproduce gpu --only llama --out DIR   (the same, in the GPU suite)
           python -m genjax.train --config experiments/llama_1b.py --workdir runs/llama_1b
Hardware:  one 80 GB accelerator (bfloat16, cuDNN flash attention on GPUs). The float32 parameters,
           gradients and AdamW's two moments take 19.8 GB; a batch of 4 x 2048 tokens adds the
           activations and the 8192 x 128256 float32 logits.
Runtime:   2000 steps of 4 x 2048 tokens (16M tokens).
Result:    a throughput figure, not a quality one: Tiny Shakespeare (1.1M bytes) is far too small
           for a 1B model. The weights are random (no checkpoint is loaded).

Model (meta-llama/Llama-3.2-1B, config.json): 16 layers, width 2048, 32 query heads of 64 and 8
key/value heads (grouped-query attention), SwiGLU MLP of hidden width 8192, RMSNorm (epsilon
1e-5), rotary positions with base 500,000, no biases, embeddings tied to the output head, a
128,256-row vocabulary. The tokens are UTF-8 bytes (256 symbols), but the embedding table keeps
Llama 3's 128,256 rows (as gpt2_small keeps GPT-2's), so the model has Llama 3.2 1B's parameters
and FLOPs. Left out: Llama 3's rope scaling (its "llama3" frequency remapping for contexts past
8192: the same parameters and FLOPs) and its tokenizer.

Parameters, by hand (tests/families/test_autoregressive.py holds genjax's count to it):
  embedding (tied head)   128256 x 2048                         =   262,668,288
  per layer: q, o         2 x 2048 x 2048                       =     8,388,608
             k, v         2 x 2048 x 512 (8 heads of 64)        =     2,097,152
             MLP          3 x 2048 x 8192 (gate, up, down)      =    50,331,648
             2 RMSNorms   2 x 2048                              =         4,096
             one layer                                          =    60,821,504
  16 layers                                                     =   973,144,064
  final RMSNorm                                                 =         2,048
  total                                                         = 1,235,814,400

Optimizer: Llama 2's recipe (Touvron et al. 2023, section 2.2): AdamW, b2 = 0.95, eps 1e-5, weight
decay 0.1, gradients clipped at 1.0, warmup then cosine decay to 10% of the peak (3e-4).
"""

from genjax import config as C
from genjax.families import autoregressive


def get_config(arg=None) -> C.Experiment:
  if arg is not None:
    raise C.ConfigError(f"experiments/llama_1b.py takes no argument, got {arg!r}.")
  return C.Experiment(
    name="llama_1b",
    family="autoregressive",
    model=autoregressive.GPTConfig(
      num_layers=16,
      num_heads=32,
      num_kv_heads=8,
      width=2048,
      mlp="swiglu",
      mlp_hidden=8192,
      norm="rmsnorm",
      positions="rotary",
      rope_theta=500000.0,
      use_bias=False,
      tie_embeddings=True,
      vocab_size=128256,
      dropout=0.0,
    ),
    data=C.Data(
      name="tiny_shakespeare", train_split="nanogpt_train", eval_split="nanogpt_val", block_size=2048, tokenizer="byte"
    ),
    optim=C.Optim(
      name="adamw",
      learning_rate=3e-4,
      b1=0.9,
      b2=0.95,
      eps=1e-5,
      weight_decay=0.1,
      schedule="warmup_cosine",
      warmup_steps=200,
      end_lr_ratio=0.1,
      grad_clip_norm=1.0,
    ),
    train=C.Train(
      steps=2000, batch_size=4, log_every=10, eval_every=500, checkpoint_every=1000, compute_dtype="bfloat16"
    ),
    eval=C.Eval(num_batches=4, batch_size=4, num_samples=2, sample_length=256),
  )
