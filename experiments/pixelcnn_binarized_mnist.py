"""Gated PixelCNN on binarized MNIST: exact test negative log-likelihood in nats.

Command:   python -m genjax.train --config experiments/pixelcnn_binarized_mnist.py --workdir runs/pixelcnn_bmnist
           python -m genjax.evaluate --workdir runs/pixelcnn_bmnist     (exact NLL over the 10,000 test images)
           python -m genjax.sample --workdir runs/pixelcnn_bmnist --num 64 --out pixelcnn.png
           The CPU variant measured for RESULTS.md:
           python -m genjax.train --config experiments/pixelcnn_binarized_mnist.py:cpu --workdir runs/pixelcnn_bmnist_cpu
Hardware:  full: one accelerator (not run here: the machine this was written on has no
           accelerator). cpu: a 2-core CPU.
Runtime:   full: 30 epochs (23,400 steps of 64), not yet run. cpu: 2.9 steps/s on an idle 2-core
           CPU; the measured run below used --config.train.steps=2000 --config.train.eval_every=1000:
           12 min 3 s, then 34 s for the exact NLL over the 10,000 test images (2026-11-27).
Result:    published: PixelCNN 81.30 nats (van den Oord, Kalchbrenner and Kavukcuoglu 2016,
           "Pixel Recurrent Neural Networks", Table 4; the gated-PixelCNN paper, "Conditional
           Image Generation with PixelCNN Decoders", reports no binarized-MNIST number).
           cpu (measured): 90.62 nats test NLL (0.167 bits/dim) after 2000 steps (1.3 epochs);
           98.53 after 200 steps (2026-11-24). A small model far from converged: the full config
           on an accelerator is what compares with 81.30.

Data: TFDS binarized_mnist, the fixed binarization of Salakhutdinov and Murray (2008), 50k
train / 10k validation / 10k test, as in the Pixel RNN paper. Model: gated blocks with vertical
and horizontal stacks (no blind spot), a 7x7 first layer (horizontal mask A) and 3x3 / 1x3 masked
kernels after it, 128 channels, then two 1x1 convolutions to one Bernoulli logit per pixel.
The depth and width are our choice for a 28x28 binary task, not the paper's.
"""

import dataclasses

from genjax import config as C
from genjax.families import autoregressive


def get_config(arg=None) -> C.Experiment:
  exp = C.Experiment(
    name="pixelcnn_binarized_mnist",
    family="autoregressive",
    model=autoregressive.PixelCNNConfig(
      num_layers=15, channels=128, kernel_size=3, first_kernel_size=7, output_channels=512
    ),
    data=C.Data(name="binarized_mnist", train_split="train", eval_split="test"),
    optim=C.Optim(
      name="adam", learning_rate=1e-3, schedule="warmup_cosine", warmup_steps=500, end_lr_ratio=0.05, grad_clip_norm=1.0
    ),
    train=C.Train(steps=23_400, batch_size=64, log_every=100, eval_every=2000, checkpoint_every=2000),
    eval=C.Eval(num_batches=8, batch_size=125, num_samples=64),
  )
  if arg == "cpu":
    # Small enough for a shared 2-core CPU: 6 layers of 32 channels, batch 32, 200 steps. A
    # sample takes 784 forward passes, so one image is drawn, at the end.
    exp = dataclasses.replace(
      exp,
      name="pixelcnn_binarized_mnist_cpu",
      model=dataclasses.replace(exp.model, num_layers=6, channels=32, output_channels=64),
      optim=dataclasses.replace(exp.optim, warmup_steps=50),
      train=dataclasses.replace(
        exp.train, steps=200, batch_size=32, log_every=25, eval_every=200, checkpoint_every=100
      ),
      eval=C.Eval(num_batches=4, batch_size=125, num_samples=1),
    )
  elif arg is not None:
    raise ValueError(f"experiments/pixelcnn_binarized_mnist.py takes no argument or 'cpu', got {arg!r}.")
  return exp
