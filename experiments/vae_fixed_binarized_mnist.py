"""The 1-layer VAE / IWAE of Burda et al. 2015 (arXiv:1509.00519) on the fixed binarization of MNIST
(Larochelle & Murray 2011; TFDS `binarized_mnist`: 50000 train, 10000 validation, 10000 test images,
binarized once, so the model can overfit it, unlike dynamically binarized MNIST).

Results:   experiments/RESULTS.md, the "Not yet measured" table.
Command:   python -m genjax.train --config experiments/vae_fixed_binarized_mnist.py[:iwae] --workdir runs/vae_fixed_mnist
           python -m genjax.evaluate --workdir runs/vae_fixed_mnist     (test NLL, k=5000)
           ARG as in experiments/vae_binarized_mnist.py: vae (default), iwae, vae2, iwae2.
Hardware:  written for one accelerator; a 2-core CPU runs a few hundred steps/second.
Runtime:   the IWAE paper's schedule, 3280 epochs of 2500 steps (batch 20): 8.2M steps. Cut it short
           with --config.train.steps=N (the learning-rate stages keep their epoch boundaries).
Result:    not measured yet. The IWAE paper reports dynamically binarized MNIST only (86.76 / 84.78
           nats for VAE / IWAE k=50, experiments/vae_binarized_mnist.py); on the fixed binarization
           the test NLL is higher because the model overfits the single binarization of the
           training set: watch eval_nll_k50 and stop (or pick the checkpoint) where it turns up.
"""

import dataclasses
import os

from genjax.config import Data, load_config_file

TRAIN_EXAMPLES = 50000
BATCH = 20


def get_config(arg: str = "vae"):
  # The same model, optimiser and schedule as the dynamically binarized experiment, re-timed
  # for 50000 training images (2500 steps per epoch instead of 3000).
  exp = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "vae_binarized_mnist.py") + f":{arg}")
  steps_per_epoch = TRAIN_EXAMPLES // BATCH
  epochs, boundaries = 0, []
  for i in range(8):
    epochs += 3**i
    boundaries.append(epochs * steps_per_epoch)
  total = boundaries.pop()
  return dataclasses.replace(
    exp,
    name=f"{arg}_fixed_binarized_mnist",
    data=Data(name="binarized_mnist", binarize="none"),
    optim=dataclasses.replace(exp.optim, boundaries=tuple(boundaries)),
    train=dataclasses.replace(exp.train, steps=total, log_every=2500, eval_every=25000, checkpoint_every=25000),
  )
