"""The second stage of two-stage generation (van den Oord et al. 2017, section 3.2): a GPT prior over
the 7x7 codes of a trained Fashion-MNIST VQ-VAE (experiments/vqvae_fashion_mnist.py), sampled as
codes and decoded by the VQ-VAE.

Results:   experiments/RESULTS.md, the VQ-VAE prior rows.
Command:   python -m genjax.train --config experiments/vqvae_fashion_mnist.py:cpu --workdir runs/vqvae_fmnist_cpu
           python -m genjax.train --config experiments/vqvae_prior_fashion_mnist.py:cpu \
               --config.model.vqvae=runs/vqvae_fmnist_cpu --workdir runs/vqvae_prior_fmnist_cpu
           python -m genjax.evaluate --workdir runs/vqvae_prior_fmnist_cpu   (two-stage bound, bits/dim)
           python -m genjax.evaluate --workdir runs/vqvae_prior_fmnist_cpu --metrics fd
           python -m genjax.sample --workdir runs/vqvae_prior_fmnist_cpu --num 64 --out prior_samples.png
           ARG: (none) for the paper-size VQ-VAE (K = 512); cpu: for the :cpu VQ-VAE (K = 256).
           config.model.vqvae must name the VQ-VAE run's workdir (its newest checkpoint is read).
Hardware:  cpu: a 2-core CPU; (none) wants an accelerator, as its VQ-VAE does.
Runtime:   cpu: 5,000 steps of 64 images (49 codes each); see RESULTS.md.
Result:    no published number for Fashion-MNIST (the paper's priors are PixelCNNs on CIFAR-10,
           ImageNet and DeepMind Lab). The bound is the VQ-VAE's reconstruction plus the prior's
           code NLL (genjax.families.autoregressive.code_prior), in bits/dim beside the uniform
           prior's.

Prior: the paper fits a PixelCNN over the latent grid; here the GPT of genjax's autoregressive
family reads the grid in raster order after a start token (as VQGAN's transformer does, Esser et
al. 2021), the shape of the shakespeare_char CPU variant's Llama block (gpt_shakespeare_char.py
:llama_cpu: 4 layers, 4 heads, width 128, RMSNorm, SwiGLU of 344, rotary positions, no biases,
tied embeddings) with its AdamW schedule (lr 1e-3, 100 warmup steps, cosine to 1e-4, b2 0.99,
weight decay 0.1, clip 1), dropout 0.1 on 49-token sequences. The full variant widens it to
nanoGPT's shakespeare_char (6 layers, 6 heads, 384) for the paper-size VQ-VAE's 512 codes.
"""

from genjax import config as C
from genjax.families.autoregressive.code_prior import CodePriorConfig

_LLAMA = dict(norm="rmsnorm", mlp="swiglu", positions="rotary", use_bias=False, tie_embeddings=True)
ARGS = {
  "": dict(
    model=CodePriorConfig(num_layers=6, num_heads=6, width=384, dropout=0.2, mlp_hidden=1024, **_LLAMA),
    batch=128,
    steps=50_000,
    dtype="bfloat16",
  ),
  "cpu": dict(
    model=CodePriorConfig(num_layers=4, num_heads=4, width=128, dropout=0.1, mlp_hidden=344, **_LLAMA),
    batch=64,
    steps=5_000,
    dtype="float32",
  ),
}


def get_config(arg: str = "") -> C.Experiment:
  if arg not in ARGS:
    raise ValueError(f"experiments/vqvae_prior_fashion_mnist.py takes no argument or ':cpu', got {arg!r}.")
  a = ARGS[arg]
  return C.Experiment(
    name="vqvae_prior_fashion_mnist" + (f"_{arg}" if arg else ""),
    family="autoregressive",
    model=a["model"],
    data=C.Data(name="fashion_mnist"),
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
      steps=a["steps"],
      batch_size=a["batch"],
      log_every=100,
      eval_every=1000,
      checkpoint_every=1000,
      steps_per_call=10,
      compute_dtype=a["dtype"],
    ),
    # The 10,000 test images; 64 samples in the grid at each evaluation.
    eval=C.Eval(num_batches=10, batch_size=1000, num_samples=64),
  )
