"""WGAN-GP (Gulrajani et al. 2017) on MNIST: Wasserstein loss, gradient penalty 10, 5 critic updates.

Command:   python -m genjax.train --config experiments/wgan_gp_mnist.py --workdir runs/wgan_gp_mnist
           python -m genjax.evaluate --workdir runs/wgan_gp_mnist   (classifier Frechet distance)
Hardware:  meant for one accelerator (200,000 generator iterations, each after 5 critic updates, as
           in the paper's gan_mnist.py: a few hours on a current GPU); not run to the end here.
Runtime:   untested at full length; see experiments/RESULTS.md for what was run.
Result:    the paper shows MNIST samples only (no number); the measured classifier Frechet
           distance goes in RESULTS.md.

The paper's MNIST code: z ~ N(0, I)^128 -> dense 4x4x256 -> ReLU -> 5x5 stride-2 transposed
convolutions to 7x7x128 (8x8 cropped), 14x14x64, 28x28x1, ReLU between and no BatchNorm; the critic
uses 5x5 stride-2 convolutions 64, 128, 256 with LeakyReLU(0.2), no normalisation, and one output.
Adam(1e-4, b1=0.5, b2=0.9), batch 50: each critic update sees its own 50 real images (a global
batch of 250 split five ways, `critic_batches="split"`) and the generator update uses 50 noise
vectors. The paper's generator ends in a sigmoid for [0, 1] pixels; ours ends in tanh for [-1, 1].
"""

from genjax import config as C
from genjax.families import gan


def get_config(arg=None) -> C.Experiment:
  if arg is not None:
    raise ValueError(f"experiments/wgan_gp_mnist.py takes no argument, got {arg!r}.")
  return C.Experiment(
      name="wgan_gp_mnist",
      family="gan",
      model=gan.Config(arch="dcgan", latent_dim=128, latent_dist="normal",
                       g_widths=(256, 128, 64), d_widths=(64, 128, 256), kernel_size=5,
                       g_norm="none", d_norm="none", loss="wasserstein", gp_weight=10.0,
                       n_critic=5, critic_batches="split"),
      data=C.Data(name="mnist"),
      optim=C.Optim(name="adam", learning_rate=1e-4, b1=0.5, b2=0.9),
      train=C.Train(steps=200_000, batch_size=250, log_every=100, eval_every=5000,
                    checkpoint_every=5000),
      eval=C.Eval(num_batches=4, batch_size=250, num_samples=64),
  )
