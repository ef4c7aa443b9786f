"""Latent diffusion on Fashion-MNIST: a class-conditional DiT learns the 7x7x4 latents of the KL
autoencoder of experiments/autoencoder_kl_fashion_mnist.py:cpu (flow matching, as flow_mnist.py).

Command:   python -m genjax.train --config experiments/autoencoder_kl_fashion_mnist.py:cpu --workdir runs/ae_fmnist
           python -m genjax.train --config experiments/latent_dit_fashion_mnist.py:cpu \
               --workdir runs/latent_dit_fmnist --config.model.autoencoder=runs/ae_fmnist
           python -m genjax.evaluate --workdir runs/latent_dit_fmnist --metrics fd --num_samples 10000 \
               --sampler heun --num_steps 5
           (the autoencoder is read from its run's newest checkpoint, read-only; samples are decoded by
           it, and FD is computed on the decoded images in the Fashion-MNIST classifier's features)
Hardware:  the 2-core CPU, no accelerator.
Runtime:   experiments/RESULTS.md, "Latent DiT on Fashion-MNIST".
Result:    experiments/RESULTS.md, "Latent DiT on Fashion-MNIST", with its sample grid.

The latent model: a DiT with patch 1 (49 tokens of the 7x7x4 latents), width 128, 6 blocks of 4
heads (genjax/nn/dit.py), on latents scaled by 1 / 2.42, the std of that autoencoder run's
latents over a training batch (genjax.families.autoencoder.latent_std, LDM's scale_by_std; set
--config.model.latent_scale for another autoencoder). The formulation, optimiser and sampler are
flow_mnist.py:cpu's: rectified flow with SD3's logit-normal times, Adam 1e-3 with 100 warm-up
steps, EMA 0.995, batch 32, labels dropped 10% of the time, Heun with guidance 2.
"""

import dataclasses
import importlib.util
import os

from genjax import config as C

_spec = importlib.util.spec_from_file_location(
  "flow_mnist_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "flow_mnist.py")
)
flow_mnist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flow_mnist)

LATENT_STD = 2.42  # of autoencoder_kl_fashion_mnist.py:cpu's latents (its header, 2026-12-05)


def get_config(arg=None) -> C.Experiment:
  if arg not in (None, "cpu"):
    raise ValueError(f"experiments/latent_dit_fashion_mnist.py takes no argument or 'cpu', got {arg!r}.")
  base = flow_mnist.get_config(arg, dataset="fashion_mnist")
  model = dataclasses.replace(
    base.model,
    backbone="dit",
    patch_size=1,
    hidden_size=128,
    depth=6,
    num_heads=4,
    autoencoder="runs/ae_fmnist",
    latent_scale=1.0 / LATENT_STD,
    eval_max_examples=None,
  )
  name = "latent_dit_fashion_mnist" + ("_cpu" if arg else "")
  return C.Experiment(**{**base.__dict__, "name": name, "model": model})
