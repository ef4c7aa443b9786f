"""WGAN-GP (Gulrajani et al. 2017) on MNIST, as the paper's code trains it (igul222/
improved_wgan_training, gan_mnist.py with MODE='wgan-gp').

Command:   python -m genjax.train --config experiments/wgan_gp_mnist.py --workdir runs/wgan_gp_mnist
           python -m genjax.train --config experiments/wgan_gp_mnist.py:cpu --workdir runs/wgan_gp_cpu
           python -m genjax.evaluate --workdir runs/wgan_gp_cpu --metrics fd   (classifier Frechet
           distance; train experiments/classifier_mnist.py first)
Hardware:  the full run (200,000 generator iterations, each after 5 critic updates) suits one
           accelerator; `cpu` is the same model and settings, fewer steps, for a 2-core CPU.
Runtime:   see experiments/RESULTS.md for what was measured.
Result:    the paper shows MNIST samples only (no number); the measured classifier Frechet
           distance goes in RESULTS.md.

The reference, line by line (gan_mnist.py and tflib/ops): DIM = 64;
  G: z ~ N(0, I)^128 -> dense 4*4*4*DIM, ReLU -> reshape 4x4x256 -> 5x5 stride-2 deconvolution
     to 8x8x128, ReLU -> keep the top-left 7x7 -> deconvolution to 14x14x64, ReLU -> to 28x28x1,
     sigmoid; no BatchNorm (BN is only in MODE='wgan');
  D: 5x5 stride-2 convolutions 64, 128, 256, LeakyReLU(0.2), dense logit; no normalisation;
  weights: dense layers Glorot-uniform, (de)convolutions He-uniform with the stride dividing the
  strided side's fan (tflib's he_init), biases 0;
  loss: mean D(fake) - mean D(real) + 10 * mean (||grad D(x_hat)|| - 1)^2 at random
  interpolates, gradients with respect to the [0, 1] images; Adam(1e-4, b1=0.5, b2=0.9);
  5 critic iterations per generator iteration, each on its own batch of 50 real images (a global
  batch of 250 split five ways, critic_batches="split"), generator batch 50; 200,000 iterations.
Here the networks see [0, 1] images (`pixels="sigmoid"`) while batches and samples stay in genjax's
[-1, 1]. The reference skips the generator update of iteration 0 and updates G before the critic
in each iteration; genjax updates the critic first: the same alternation, shifted by half a step.
"""

import dataclasses

from genjax import config as C
from genjax.families import gan


def get_config(arg=None) -> C.Experiment:
  exp = C.Experiment(
    name="wgan_gp_mnist",
    family="gan",
    model=gan.Config(
      arch="dcgan",
      latent_dim=128,
      latent_dist="normal",
      g_widths=(256, 128, 64),
      d_widths=(64, 128, 256),
      kernel_size=5,
      weight_init="tflib",
      crop="top_left",
      pixels="sigmoid",
      g_norm="none",
      d_norm="none",
      loss="wasserstein",
      gp_weight=10.0,
      n_critic=5,
      critic_batches="split",
    ),
    data=C.Data(name="mnist"),
    optim=C.Optim(name="adam", learning_rate=1e-4, b1=0.5, b2=0.9),
    train=C.Train(steps=200_000, batch_size=250, log_every=100, eval_every=5000, checkpoint_every=5000),
    eval=C.Eval(num_batches=4, batch_size=250, num_samples=64),
  )
  if arg == "cpu":
    exp = dataclasses.replace(
      exp,
      name="wgan_gp_mnist_cpu",
      train=dataclasses.replace(exp.train, steps=2000, log_every=50, eval_every=500, checkpoint_every=500),
    )
  elif arg is not None:
    raise C.ConfigError(f"experiments/wgan_gp_mnist.py takes no argument or 'cpu', got {arg!r}.")
  return exp
