"""SNGAN ResNet (Miyato et al. 2018) on CIFAR-10: spectral normalisation, hinge loss, 5 D updates.

Command:   python -m genjax.train --config experiments/sngan_cifar10.py --workdir runs/sngan_cifar10
           python -m genjax.evaluate --workdir runs/sngan_cifar10 --metrics fd,is --num_samples 50000
           (FID / IS need the Inception weights, --inception_weights or $GENJAX_INCEPTION_WEIGHTS)
Hardware:  one accelerator; CIFAR-10 is not available offline here, so this config has only been
           benchmarked on synthetic batches (python -m genjax.bench --only sngan_cifar10).
Runtime:   not run.
Result:    published (Miyato et al. 2018, Table 2, ResNet, hinge loss): Inception score 8.22,
           FID 21.7. Not measured here.

The paper's ResNet (Table 4, after Gulrajani et al. 2017) at 32x32: G z ~ N(0, I)^128 -> dense
4x4x256 -> three up-sampling residual blocks of 256 -> BN, ReLU, 3x3 conv, tanh; D: down-sampling
residual blocks 128, 128, plain blocks 128, 128, ReLU, global sum pooling, dense, every layer
spectrally normalised. Optimiser (appendix B.2): Adam(2e-4, b1=0, b2=0.9), n_dis = 5, batch 64,
100K generator updates ("the number of updates for GAN generator were 100K for all
experiments"); no EMA.
"""

from genjax import config as C
from genjax.families import gan


def get_config(arg=None) -> C.Experiment:
  if arg is not None:
    raise C.ConfigError(f"experiments/sngan_cifar10.py takes no argument, got {arg!r}.")
  return C.Experiment(
    name="sngan_cifar10",
    family="gan",
    model=gan.Config(
      arch="sngan_resnet",
      latent_dim=128,
      latent_dist="normal",
      g_widths=(256, 256, 256, 256),
      d_widths=(128, 128, 128, 128),
      g_norm="batch",
      d_norm="none",
      spectral_norm=True,
      loss="hinge",
      n_critic=5,
    ),
    data=C.Data(name="cifar10"),
    optim=C.Optim(name="adam", learning_rate=2e-4, b1=0.0, b2=0.9),
    train=C.Train(steps=100_000, batch_size=64, log_every=100, eval_every=5000, checkpoint_every=5000),
    eval=C.Eval(num_batches=4, batch_size=64, num_samples=64),
  )
