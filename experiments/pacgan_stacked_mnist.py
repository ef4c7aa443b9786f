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

Settings of PacGAN's Stacked MNIST code (fjxmlzn/PacGAN, stacked_MNIST_experiments/
VEEGAN_experiment: config.py, model.py, ops.py), line by line:
  networks: DCGAN-tensorflow's generic ones at 28x28x3: z ~ U[-1, 1]^100 -> dense 2x2x512, BN,
  ReLU -> 5x5 stride-2 transposed convolutions to 4x4x256, 7x7x128, 14x14x64 (BN, ReLU), 28x28x3,
  tanh; D: 5x5 stride-2 convolutions 64, 128, 256, 512 with BN after all but the first,
  LeakyReLU(0.2), dense logit; weights N(0, 0.02), BN decay 0.9;
  loss: sigmoid cross-entropy (non-saturating); Adam(2e-4, b1=0.5); batch 64 discriminator inputs;
  per batch one D update and two G updates, all three with the same z (reuse_noise); 50 epochs of
  2000 batches (100,000 steps);
  packing: D's first layer takes 3m channels; the m images of a pack come from m separate
  generator calls, one per slot, each with its own BatchNorm statistics (pack_g_calls="per_slot");
  so PacDCGANm draws a global batch of 64 * m images;
  evaluation: 26,000 samples (generator in inference mode, unpacked), each channel classified by
  an MNIST classifier: modes covered of 1000 and KL to the uniform distribution.
Deviations: their training set is 128,000 stacked images drawn once (with the packs drawn once)
from MNIST train + test; genjax's stacked_mnist stacks three MNIST training digits per example,
drawn per step (see genjax.data). Their real images are in [0, 1] while their generator ends in
tanh (a mismatch a discriminator can exploit); genjax keeps both in [-1, 1].
Full length (100,000 steps, 200,000 generator updates): on this 2-core CPU 1000 steps took 12.6 min
(m = 1) and 19.0 min (m = 2), so about 21 and 32 hours; on one accelerator the run is a question of
minutes per 10,000 steps (the GPU suite measures it).
"""

from genjax import config as C
from genjax.families import gan


def get_config(arg: str = "2") -> C.Experiment:
  try:
    m = int(arg)
  except ValueError:
    m = 0
  if m < 1:
    raise C.ConfigError(f"experiments/pacgan_stacked_mnist.py takes the packing degree (1, 2, 3, 4), got {arg!r}.")
  return C.Experiment(
    name="dcgan_stacked_mnist" if m == 1 else f"pacdcgan{m}_stacked_mnist",
    family="gan",
    model=gan.Config(
      arch="dcgan",
      latent_dim=100,
      latent_dist="uniform",
      g_widths=(512, 256, 128, 64),
      d_widths=(64, 128, 256, 512),
      kernel_size=5,
      weight_init="normal",
      g_norm="batch",
      d_norm="batch",
      bn_momentum=0.9,
      loss="non_saturating",
      g_steps=2,
      reuse_noise=True,
      pack=m,
      pack_g_calls="per_slot",
    ),
    data=C.Data(name="stacked_mnist"),
    optim=C.Optim(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999),
    train=C.Train(steps=100_000, batch_size=64 * m, log_every=100, eval_every=10_000, checkpoint_every=5000),
    eval=C.Eval(num_batches=4, batch_size=64 * m, num_samples=64),
  )
