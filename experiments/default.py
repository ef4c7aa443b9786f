"""The default experiment: a VAE on scikit-learn's 8x8 digits (bundled, no download).

Results:   experiments/RESULTS.md, the first row (vae, digits).
Command:   python -m genjax.train --workdir /tmp/genjax-default
           (no --config: this file is the default; the same as --config experiments/default.py)
           python -m genjax.evaluate --workdir /tmp/genjax-default     (test NLL, k=5000)
Hardware:  2-core CPU, no accelerator.
Runtime:   training (4000 steps of batch 100, evaluations and checkpoints included): 18 s on the
           idle 2-core CPU, about 2 minutes on one shared with other jobs; the k=5000 evaluation
           14 s idle (RESULTS.md's first row, with its commands and dates).
Result:    measured 2026-11-24: test NLL 84.58 nats per 8x8 image (importance-sampled, k=5000,
           discretized logistic over the 17 grey levels; 1.91 bits/dim), test ELBO -91.29
           (KL 21.03, reconstruction -70.26), over the 297 test images. Samples (decoder means)
           land in WORKDIR/samples/step_*.png, reconstructions next to them.

The model is the MLP VAE of Burda et al. 2015 shrunk to the data: 64-200-200-16 with tanh units
(the MNIST model is 784-200-200-50), with a discretized logistic likelihood over the digits'
17 grey levels, trained on the 1500 training images and evaluated on the 297 test images (whose
writers are unseen in training). There is no published number for this dataset.
"""

from genjax.config import ConfigError, Data, Eval, Experiment, Optim, Train
from genjax.families import vae


def get_config(arg=None) -> Experiment:
  if arg is not None:
    raise ConfigError(f"experiments/default.py takes no argument after ':', got {arg!r}.")
  return Experiment(
    name="default",
    family="vae",
    model=vae.Config(
      architecture="mlp",
      hidden=(200, 200),
      latents=(16,),
      activation="tanh",
      likelihood="logistic",
      num_bins=17,
      scale="output",
      eval_samples=5000,
      eval_chunk=500,
    ),
    data=Data(name="digits"),
    optim=Optim(name="adam", learning_rate=1e-3, schedule="warmup_cosine", warmup_steps=100, end_lr_ratio=0.1),
    train=Train(steps=4000, batch_size=100, log_every=100, eval_every=1000, checkpoint_every=1000),
    eval=Eval(num_batches=3, batch_size=100, num_samples=64),
  )
