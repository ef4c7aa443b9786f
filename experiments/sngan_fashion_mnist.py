"""SNGAN (Miyato et al. 2018) on Fashion-MNIST: spectral normalisation in D, hinge loss, TTUR.

Command:   python -m genjax.train --config experiments/sngan_fashion_mnist.py[:ARG] \
               --workdir runs/sngan_fashion_mnist_ARG
           ARG = cnn (default), resnet, cnn_cond, resnet_cond (class-conditional: conditional
           BatchNorm in G and a projection discriminator, Miyato & Koyama 2018)
           python -m genjax.evaluate --workdir runs/sngan_fashion_mnist_cnn  (classifier FD; train
           experiments/classifier_fashion_mnist.py first)
Hardware:  meant for one accelerator (50,000 steps of batch 64: well under an hour on a current GPU
           for the CNN); not run to the end here.
Runtime:   untested at full length. `cnn` on the 2-core CPU, no accelerator: about 2 s per step
           of batch 64 (~210 GFLOP: the 4x4 deconvolutions to 14x14x256 and 28x28x128 dominate);
           the measured run was stopped by SIGTERM after 254 steps (8.5 min) and evaluated there
           (RESULTS.md, 2026-11-24): classifier Frechet distance 67.6 with the raw weights
           (88.8 with the EMA, which at step 254 still holds 78% of the initial weights).
Result:    the paper reports CIFAR-10 and STL-10 only (SN-GAN CNN: Inception score 7.42, FID 29.3
           on CIFAR-10 with the hinge loss), no Fashion-MNIST number; the measured classifier Frechet
           distance goes in RESULTS.md. The same architectures at 32x32 are the paper's CIFAR ones
           (set --config.data.name=cifar10 and g_widths as in the comments below).

Architectures (paper's Tables 3 and 4, 32x32), adapted to 28x28 by starting the generator at 7x7
instead of 4x4 and doubling twice instead of three times (28 is not 4 * 2^3):
  cnn     G: z ~ N(0, I)^128 -> dense 7x7x512 -> 4x4 stride-2 deconvs 256, 128 (BN, ReLU) -> 3x3 conv,
          tanh (CIFAR: 4x4x512 and deconvs 256, 128, 64: g_widths=(512, 256, 128, 64));
          D: the paper's unchanged: 3x3 conv 64, 4x4/2 conv 64, 3x3 128, 4x4/2 128, 3x3 256, 4x4/2
          256, 3x3 512, LeakyReLU(0.1), dense (28 -> 14 -> 7 -> 4).
  resnet  G: dense 7x7x256 and two up-sampling residual blocks of 256 (CIFAR: 4x4 and three);
          D: the paper's unchanged: down blocks 128, 128, plain blocks 128, 128, ReLU, sum pooling.
Optimiser: the two time-scale update rule (Heusel et al. 2017) as used with spectral norm by
Zhang et al. 2019 (SAGAN): Adam(b1=0, b2=0.9), generator rate 1e-4, discriminator rate 4e-4, one
discriminator update per generator update (the SNGAN paper instead uses one rate and 5 D updates
for the ResNet). EMA of the generator weights (decay 0.999) for samples.
"""

from genjax import config as C
from genjax.families import gan

ARGS = ("cnn", "resnet", "cnn_cond", "resnet_cond")


def get_config(arg: str = "cnn", dataset: str = "fashion_mnist") -> C.Experiment:
  if arg not in ARGS:
    raise ValueError(f"experiments/sngan_{dataset}.py takes one of {', '.join(ARGS)}, got {arg!r}.")
  arch, _, cond = arg.partition("_")
  if arch == "cnn":
    widths = dict(g_widths=(512, 256, 128), d_widths=(64, 128, 256, 512))
  else:
    widths = dict(g_widths=(256, 256, 256), d_widths=(128, 128, 128, 128))
  return C.Experiment(
      name=f"sngan_{dataset}_{arg}",
      family="gan",
      model=gan.Config(arch=f"sngan_{arch}", latent_dim=128, latent_dist="normal", **widths,
                       g_norm="batch", d_norm="none", spectral_norm=True, loss="hinge",
                       n_critic=1, d_learning_rate=4e-4, conditional=bool(cond)),
      data=C.Data(name=dataset),
      optim=C.Optim(name="adam", learning_rate=1e-4, b1=0.0, b2=0.9, ema_decay=0.999),
      train=C.Train(steps=50_000, batch_size=64, log_every=100, eval_every=5000, checkpoint_every=5000),
      eval=C.Eval(num_batches=4, batch_size=64, num_samples=64),
  )
