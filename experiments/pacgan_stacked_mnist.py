"""DCGAN and PacDCGAN (Lin et al. 2018) on Stacked MNIST: mode coverage out of 1000.

Command:   python -m genjax.train --config experiments/pacgan_stacked_mnist.py:M \
               --workdir runs/pacgan_stacked_mnist_M
           M = 1 is plain DCGAN, M = 2 (default) PacDCGAN2, M = 3, 4 PacDCGAN3/4.
           python -m genjax.evaluate --workdir runs/pacgan_stacked_mnist_M   (modes and KL over 26,000
           samples, classified channel by channel by experiments/classifier_mnist.py's network)
Hardware:  meant for one accelerator (100,000 steps: 50 epochs of 128,000 samples at batch 64, as in
           PacGAN's code: about an hour on a current GPU); not run to the end here.
Runtime:   untested at full length. On the 2-core CPU, no accelerator (2026-11-24), 1000 steps
           took 12.6 min for M = 1 and 19.0 min for M = 2 (with --config.train.steps=1000), and
           `python -m genjax.evaluate` about a minute.
Result:    PacGAN (Lin et al. 2018, Table 2, VEEGAN's setting): DCGAN 99.0 modes, KL 3.40;
           PacDCGAN2 1000.0 modes, KL 0.06 (PacDCGAN3 1000.0 / 0.06, PacDCGAN4 1000.0 / 0.07).
           Measured here after 1000 steps (1% of the schedule; RESULTS.md): DCGAN 23 modes, KL 4.77;
           PacDCGAN2 949 modes, KL 0.65 (grids in experiments/samples/).

Settings of PacGAN's Stacked MNIST code (VEEGAN experiment): the DCGAN-tensorflow networks at
28x28x3 (z ~ U[-1, 1]^100 -> dense 2x2x512 -> 5x5 stride-2 transposed convolutions 256, 128, 64, 3;
D: 5x5 stride-2 convolutions 64, 128, 256, 512, BatchNorm after the first, LeakyReLU(0.2)),
non-saturating loss, Adam(2e-4, b1=0.5), two generator updates per discriminator update. The
discriminator sees 64 (packed) inputs per step, so PacDCGANm draws a global batch of 64 * m images,
packed in groups of m along channels (D's first layer takes 3m channels).
Their training set is 128,000 stacked images drawn once from MNIST train + test; ours is
genjax's stacked_mnist dataset (triples of MNIST training digits, see genjax.data).
"""

from genjax import config as C
from genjax.families import gan


def get_config(arg: str = "2") -> C.Experiment:
  try:
    m = int(arg)
  except ValueError:
    m = 0
  if m < 1:
    raise ValueError(f"experiments/pacgan_stacked_mnist.py takes the packing degree (1, 2, 3, 4), got {arg!r}.")
  return C.Experiment(
      name="dcgan_stacked_mnist" if m == 1 else f"pacdcgan{m}_stacked_mnist",
      family="gan",
      model=gan.Config(arch="dcgan", latent_dim=100, latent_dist="uniform",
                       g_widths=(512, 256, 128, 64), d_widths=(64, 128, 256, 512), kernel_size=5,
                       g_norm="batch", d_norm="batch", loss="non_saturating", g_steps=2, pack=m),
      data=C.Data(name="stacked_mnist"),
      optim=C.Optim(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999),
      train=C.Train(steps=100_000, batch_size=64 * m, log_every=100, eval_every=10_000,
                    checkpoint_every=5000),
      eval=C.Eval(num_batches=4, batch_size=64 * m, num_samples=64),
  )
