"""The VQ-VAE of van den Oord, Vinyals and Kavukcuoglu 2017 (arXiv:1711.00937) on Fashion-MNIST:
images as a 7x7 grid of discrete codes, the first stage of two-stage generation.

Results:   experiments/RESULTS.md, the VQ-VAE rows.
Command:   python -m genjax.train --config experiments/vqvae_fashion_mnist.py[:cpu] --workdir runs/vqvae_fmnist
           python -m genjax.evaluate --workdir runs/vqvae_fmnist   (reconstruction, the uniform-prior bound)
           ARG: (none) the paper's networks (section 4.1); cpu: narrower networks for a 2-core CPU.
Hardware:  the paper's networks want an accelerator; :cpu runs on a 2-core CPU.
Runtime:   (none) 250,000 steps of batch 128, as section 4.1 trains CIFAR-10; :cpu 3,000 steps of 64.
Result:    no published number for Fashion-MNIST (the paper reports CIFAR-10: 4.67 bits/dim).

Model (genjax.families.vqvae): section 4.1's encoder, two 4x4 stride-2 convolutions and two
residual 3x3 blocks (ReLU, 3x3 conv, ReLU, 1x1 conv), all 256 hidden units, and the decoder that
mirrors it; 28x28 images become 7x7 latents, each one of K = 512 codes. The code width D = 64, the
commitment weight beta = 0.25 and the EMA decay 0.99 of the codebook are the paper's (section 3.2,
Appendix A.1; D as DeepMind's Sonnet vqvae_example). Codes unused for about a hundred steps
restart at encoder outputs (Jukebox's random restarts; restart_threshold 0 turns them off).
Likelihood: the discretized logistic over the 256 grey levels, so the reconstruction is in nats and
the uniform prior over codes gives a bound in bits/dim. Optimiser: Adam, learning rate 2e-4
(section 4.1). `:cpu`: 64 hidden units (residual 32), K = 256, D = 16, batch 64, 3,000 steps at
1e-3: a shorter, narrower run, not the paper's model.
"""

from genjax.config import Data, Eval, Experiment, Optim, Train
from genjax.families.vqvae import VQVAEConfig

ARGS = {
  "": dict(model=VQVAEConfig(), lr=2e-4, batch=128, steps=250_000),
  "cpu": dict(
    model=VQVAEConfig(hidden=64, residual_hidden=32, num_codes=256, code_dim=16), lr=1e-3, batch=64, steps=3_000
  ),
}


def get_config(arg: str = "") -> Experiment:
  if arg not in ARGS:
    raise ValueError(f"experiments/vqvae_fashion_mnist.py takes no argument or ':cpu', got {arg!r}.")
  a = ARGS[arg]
  return Experiment(
    name="vqvae_fashion_mnist" + (f"_{arg}" if arg else ""),
    family="vae",
    model=a["model"],
    data=Data(name="fashion_mnist"),
    optim=Optim(name="adam", learning_rate=a["lr"]),
    train=Train(
      steps=a["steps"], batch_size=a["batch"], log_every=100, eval_every=1000, checkpoint_every=1000, steps_per_call=10
    ),
    eval=Eval(num_batches=10, batch_size=100, num_samples=64),
  )
