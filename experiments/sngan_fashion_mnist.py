"""SNGAN (Miyato et al. 2018) on Fashion-MNIST: spectral normalisation in D, hinge loss, the
paper's "standard CNN" (Table 3) and ResNet (Table 4) at 28x28.

Command:   python -m genjax.train --config experiments/sngan_fashion_mnist.py[:ARG] \
               --workdir runs/sngan_fashion_mnist_ARG
           ARG = cnn (default), resnet, cnn_cond, resnet_cond (class-conditional: conditional
           BatchNorm in G and a projection discriminator, Miyato & Koyama 2018), cnn_cpu (the cnn
           model and settings, fewer steps, for a 2-core CPU)
           python -m genjax.evaluate --workdir runs/sngan_fashion_mnist_cnn --metrics fd [--no_ema]
           (classifier Frechet distance; train experiments/classifier_fashion_mnist.py first)
Hardware:  the full runs (100K generator updates) suit one accelerator; cnn_cpu is for a 2-core CPU.
Runtime:   see experiments/RESULTS.md for what was measured.
Result:    the paper reports CIFAR-10 and STL-10 only (hinge loss: CNN IS 7.58, FID 25.5; ResNet IS
           8.22, FID 21.7 on CIFAR-10), no Fashion-MNIST number; the measured classifier Frechet
           distance goes in RESULTS.md. The paper's CIFAR-10 ResNet is experiments/sngan_cifar10.py.

Networks (paper, Tables 3 and 4, 32x32), at 28x28 the generator starts at 7x7 and doubles twice
(28 is not 4 * 2^3), keeping the paper's widths at the last stages before the image:
  cnn     G: z ~ N(0, I)^128 -> dense 7x7x256 -> 4x4 stride-2 deconvolutions 128, 64 (BN, ReLU)
          -> 3x3 conv, tanh (CIFAR: dense 4x4x512, deconvolutions 256, 128, 64);
          D: the paper's unchanged: 3x3 conv 64, 4x4/2 conv 64, 3x3 128, 4x4/2 128, 3x3 256, 4x4/2
          256, 3x3 512, LeakyReLU(0.1) everywhere, dense (28 -> 14 -> 7 -> 4); spectral norm on
          every layer, no BN.
  resnet  G: dense 7x7x256 and two up-sampling residual blocks of 256 (CIFAR: 4x4 and three);
          D: the paper's unchanged: down blocks 128, 128, plain blocks 128, 128, ReLU, sum pooling.
Optimiser (Table 1 and appendix B): Adam, batch 64, 100K generator updates, hinge loss (eq. 16-17).
  cnn:    setting C, alpha 2e-4, b1 0.5, b2 0.999, n_dis 1 (the paper does not name the setting of
          its CIFAR-10 CNN row; the authors' chainer-gan-lib example.sh trains SN-DCGAN with C);
  resnet: alpha 2e-4, b1 0, b2 0.9, n_dis 5 (appendix B.2).
The paper keeps no EMA; genjax adds one (decay 0.999 with warm-up) for samples, and the
evaluations report the raw weights beside it.
"""

import dataclasses

from genjax import config as C
from genjax.families import gan

ARGS = ("cnn", "resnet", "cnn_cond", "resnet_cond", "cnn_cpu")


def get_config(arg: str = "cnn", dataset: str = "fashion_mnist") -> C.Experiment:
  if arg not in ARGS:
    raise C.ConfigError(f"experiments/sngan_{dataset}.py takes one of {', '.join(ARGS)}, got {arg!r}.")
  arch, _, variant = arg.partition("_")
  if arch == "cnn":
    model = gan.Config(arch="sngan_cnn", g_widths=(256, 128, 64), d_widths=(64, 128, 256, 512), n_critic=1)
    optim = C.Optim(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999, ema_decay=0.999)
  else:
    model = gan.Config(arch="sngan_resnet", g_widths=(256, 256, 256), d_widths=(128, 128, 128, 128), n_critic=5)
    optim = C.Optim(name="adam", learning_rate=2e-4, b1=0.0, b2=0.9, ema_decay=0.999)
  model = dataclasses.replace(
    model,
    latent_dim=128,
    latent_dist="normal",
    g_norm="batch",
    d_norm="none",
    spectral_norm=True,
    loss="hinge",
    conditional=variant == "cond",
  )
  exp = C.Experiment(
    name=f"sngan_{dataset}_{arg}",
    family="gan",
    model=model,
    data=C.Data(name=dataset),
    optim=optim,
    train=C.Train(steps=100_000, batch_size=64, log_every=100, eval_every=5000, checkpoint_every=5000),
    eval=C.Eval(num_batches=4, batch_size=64, num_samples=64),
  )
  if variant == "cpu":
    exp = dataclasses.replace(
      exp, train=dataclasses.replace(exp.train, steps=2000, log_every=50, eval_every=500, checkpoint_every=500)
    )
  return exp
