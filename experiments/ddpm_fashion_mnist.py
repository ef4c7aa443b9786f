"""Class-conditional DDPM on Fashion-MNIST with classifier-free guidance.

Command:   python -m genjax.train --config experiments/ddpm_fashion_mnist.py --workdir runs/ddpm_fashion_mnist
           python -m genjax.evaluate --workdir runs/ddpm_fashion_mnist   (bits/dim, full bound)
           python -m genjax.sample --workdir runs/ddpm_fashion_mnist --num 100 --out fashion.png \
               --sampler ddim --num_steps 50 --guidance_scale 2
           (`:cpu` selects the small model and short run of experiments/ddpm_mnist.py)
Hardware:  one accelerator for the full config (50k steps of batch 128, 6.5M parameters: about an
           hour on a current GPU; not run here); `:cpu` ran on the 2-core CPU, no accelerator.
Runtime:   `:cpu`: 600 steps in 6.9 min (2026-11-24); the full bound on 50 test images 4.6 min.
Result:    no published DDPM bits/dim for Fashion-MNIST in [-1, 1]. `:cpu` at step 600 (EMA): 4.21
           bits/dim on the first 50 test images (diffusion terms 2.41, decoder 1.80) and the classifier
           Frechet distance in experiments/RESULTS.md; samples are still noisy at that length.

The same model, guidance and schedule as experiments/ddpm_mnist.py (see its docstring).
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
  "ddpm_mnist_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddpm_mnist.py")
)
_mnist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mnist)


def get_config(arg=None):
  return _mnist.get_config(arg, dataset="fashion_mnist")
