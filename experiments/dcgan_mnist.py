"""DCGAN (Radford et al. 2016) on MNIST: non-saturating loss, BatchNorm, Adam(2e-4, b1=0.5).

Command:   python -m genjax.train --config experiments/dcgan_mnist.py --workdir runs/dcgan_mnist
           The short CPU run measured for RESULTS.md (same architecture, fewer steps):
           python -m genjax.train --config experiments/dcgan_mnist.py:cpu --workdir runs/dcgan_mnist_cpu
           Frechet distance in the MNIST classifier's features (train experiments/classifier_mnist.py
           first): python -m genjax.evaluate --workdir runs/dcgan_mnist
Hardware:  the full config is meant for one accelerator (23,400 steps of batch 64, 25 epochs as in
           the DCGAN-tensorflow reference code: minutes on a current GPU, untested here); the `cpu`
           variant is for a 2-core CPU, no accelerator.
Runtime:   `cpu`: 1000 steps in 8.6 minutes (about 2 steps/s, two evaluations included) on the
           2-core CPU, no accelerator, 2026-11-24; then `python -m genjax.evaluate` in 32 s.
Result:    the DCGAN paper reports no MNIST number. Measured for `cpu` (RESULTS.md): Frechet
           distance 77.5 in the MNIST classifier's features (10,000 samples against MNIST train;
           train vs test is 0.117, uniform noise 110.9). By step 500 the generator had collapsed to
           a handful of shapes (experiments/samples/dcgan_mnist_cpu_step1000.png), the mode
           collapse that PacGAN measures for this architecture on Stacked MNIST.

Architecture: the DCGAN-tensorflow layout that PacGAN's code uses at 28x28: z ~ U[-1, 1]^100 ->
dense 2x2x512 -> 5x5 stride-2 transposed convolutions 4x4x256, 7x7x128, 14x14x64, 28x28x1 (BatchNorm
and ReLU between, tanh at the end); D: 5x5 stride-2 convolutions 64, 128, 256, 512 with LeakyReLU(0.2)
and BatchNorm after all but the first, then one logit. 4.5M generator and 4.3M discriminator
parameters.
"""

import dataclasses

from genjax import config as C
from genjax.families import gan


def get_config(arg=None) -> C.Experiment:
  exp = C.Experiment(
      name="dcgan_mnist",
      family="gan",
      model=gan.Config(arch="dcgan", latent_dim=100, latent_dist="uniform",
                       g_widths=(512, 256, 128, 64), d_widths=(64, 128, 256, 512), kernel_size=5,
                       g_norm="batch", d_norm="batch", loss="non_saturating"),
      data=C.Data(name="mnist"),
      optim=C.Optim(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999),
      train=C.Train(steps=23_400, batch_size=64, log_every=100, eval_every=2000, checkpoint_every=2000),
      eval=C.Eval(num_batches=4, batch_size=64, num_samples=64),
  )
  if arg == "cpu":
    # 1000 steps (1.07 epochs) of the same model: under ten minutes on a 2-core CPU.
    exp = dataclasses.replace(exp, name="dcgan_mnist_cpu", train=dataclasses.replace(
        exp.train, steps=1000, log_every=50, eval_every=500, checkpoint_every=500))
  elif arg is not None:
    raise ValueError(f"experiments/dcgan_mnist.py takes no argument or 'cpu', got {arg!r}.")
  return exp
