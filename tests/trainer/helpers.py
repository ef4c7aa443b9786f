"""A small but real experiment for loop tests: the MLP VAE on the embedded 8x8 digits."""

import dataclasses

from genjax.config import Data, Eval, Experiment, Optim, Parallel, Train
from genjax.families import vae

CONFIG_FILE = """
import dataclasses
from genjax.config import Data, Eval, Experiment, Optim, Train
from genjax.families import vae

def get_config(arg=None):
  return Experiment(
      name="loop-test", family="vae",
      model=vae.Config(hidden=(64,), latents=(8,), eval_samples=20, eval_step_samples=5),
      data=Data(name="digits"), optim=Optim(learning_rate=3e-3, ema_decay=0.9),
      train=Train(steps={steps}, batch_size=16, log_every=1, eval_every={eval_every},
                  checkpoint_every={checkpoint_every}, progress=False),
      eval=Eval(num_batches=1, num_samples=16))
"""


def small_experiment(steps=12, checkpoint_every=4, eval_every=6, mode="jit", num_devices=None, **optim):
  return Experiment(
    name="loop-test",
    family="vae",
    model=vae.Config(hidden=(64,), latents=(8,), eval_samples=20, eval_step_samples=5),
    data=Data(name="digits"),
    optim=dataclasses.replace(Optim(learning_rate=3e-3, ema_decay=0.9), **optim),
    train=Train(
      steps=steps, batch_size=16, log_every=1, eval_every=eval_every, checkpoint_every=checkpoint_every, progress=False
    ),
    parallel=Parallel(mode=mode, num_devices=num_devices),
    eval=Eval(num_batches=1, num_samples=16),
  )


def write_config(path, steps=40, checkpoint_every=5, eval_every=20):
  path.write_text(CONFIG_FILE.format(steps=steps, checkpoint_every=checkpoint_every, eval_every=eval_every))
  return str(path)


def losses(workdir):
  from genjax.trainer.writers import read_metrics

  return {r["step"]: r["loss"] for r in read_metrics(workdir) if "loss" in r}
