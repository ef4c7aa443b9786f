"""DCGAN (Radford et al. 2016) on MNIST, as the DCGAN reference code trains it: DCGAN-tensorflow's
MNIST networks (carpedm20/DCGAN-tensorflow, model.py, the `y_dim` branch that main.py always
takes for mnist), class-conditional by label concatenation.

Command:   python -m genjax.train --config experiments/dcgan_mnist.py --workdir runs/dcgan_mnist
           The CPU run measured for RESULTS.md (the same model and settings, fewer steps):
           python -m genjax.train --config experiments/dcgan_mnist.py:cpu --workdir runs/dcgan_mnist_cpu
           python -m genjax.evaluate --workdir runs/dcgan_mnist_cpu --metrics fd
           (Frechet distance and class spread in the MNIST classifier's features, 10,000 samples vs
           MNIST train; train experiments/classifier_mnist.py first)
           The independent PyTorch version: experiments/reference/torch_dcgan_mnist.py
Hardware:  the full run (25 epochs, 23,400 steps) suits one accelerator; `cpu` is for a 2-core CPU.
Runtime:   see experiments/RESULTS.md (the dcgan_mnist rows) for the measured `cpu` wall time.
Result:    the DCGAN paper reports no MNIST number. Measured for `cpu`: RESULTS.md.

The reference, line by line (model.py / ops.py / main.py of DCGAN-tensorflow):
  G: [z ~ U[-1, 1]^100, one-hot y] -> dense 1024, BN, ReLU -> [., y] -> dense 7*7*128, BN, ReLU
     -> [., y maps] -> 5x5 stride-2 deconvolution to 14x14x128, BN, ReLU -> [., y maps]
     -> 5x5 stride-2 deconvolution to 28x28x1 -> sigmoid (gf_dim 64, gfc_dim 1024);
  D: [x, y maps] -> 5x5 stride-2 conv, 1 + 10 filters, LeakyReLU(0.2) -> [., y maps] -> 5x5
     stride-2 conv, 64 + 10 filters, BN, LeakyReLU -> flatten, [., y] -> dense 1024, BN,
     LeakyReLU -> [., y] -> dense logit (df_dim 64, dfc_dim 1024);
  weights N(0, 0.02), biases 0, BN decay 0.9, eps 1e-5;
  sigmoid cross-entropy (non-saturating), Adam(2e-4, b1=0.5), batch 64, 25 epochs; each step one
  D update then two G updates ("Run g_optim twice to make sure that d_loss does not go to zero"),
  all three with the same z and with the fakes conditioned on the real batch's labels.
Deviations: the reference reads MNIST train + test (70,000 images, shuffled once); genjax reads
MNIST train (60,000) and reshuffles every epoch, so 25 epochs are 23,400 steps. Its pixels are in
[0, 1]: here `pixels="sigmoid"` keeps G's sigmoid and D's [0, 1] input, with batches and samples
in genjax's [-1, 1]. Layers followed by BatchNorm carry no bias here (BN cancels it). The reference draws its
convolutions' weights from a normal truncated at 2 std; genjax draws every weight from N(0, 0.02),
as the paper says.
"""

import dataclasses

from genjax import config as C
from genjax.families import gan


def get_config(arg=None) -> C.Experiment:
  exp = C.Experiment(
    name="dcgan_mnist",
    family="gan",
    model=gan.Config(
      arch="dcgan_mnist",
      latent_dim=100,
      latent_dist="uniform",
      g_widths=(1024, 128),
      d_widths=(64, 1024),
      kernel_size=5,
      weight_init="normal",
      pixels="sigmoid",
      g_norm="batch",
      d_norm="batch",
      bn_momentum=0.9,
      loss="non_saturating",
      n_critic=1,
      g_steps=2,
      conditional=True,
      fake_labels="real",
      reuse_noise=True,
    ),
    data=C.Data(name="mnist"),
    optim=C.Optim(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999),
    train=C.Train(steps=23_400, batch_size=64, log_every=100, eval_every=2340, checkpoint_every=2340),
    eval=C.Eval(num_batches=4, batch_size=64, num_samples=100),
  )
  if arg == "cpu":
    # The same model and settings for a 2-core CPU: 3 epochs (2,808 steps), 17.8 minutes at 2.9
    # steps/s on the 2-core CPU at load ~2 (RESULTS.md's dcgan_mnist row, 2026-11-28); slower under load.
    exp = dataclasses.replace(
      exp,
      name="dcgan_mnist_cpu",
      train=dataclasses.replace(exp.train, steps=2808, log_every=48, eval_every=936, checkpoint_every=936),
    )
  elif arg is not None:
    raise C.ConfigError(f"experiments/dcgan_mnist.py takes no argument or 'cpu', got {arg!r}.")
  return exp
