"""Class-conditional DDPM on Fashion-MNIST with classifier-free guidance.

Command:   python -m genjax.train --config experiments/ddpm_fashion_mnist.py --workdir runs/ddpm_fashion_mnist
           python -m genjax.evaluate --workdir runs/ddpm_fashion_mnist   (bits/dim, full bound)
           python -m genjax.sample --workdir runs/ddpm_fashion_mnist --num 100 --out fashion.png \
               --sampler ddim --num_steps 50 --guidance_scale 2
           (`:cpu` selects the small model and short run of experiments/ddpm_mnist.py)
Hardware:  one accelerator (50k steps of batch 128, 6.5M parameters: about an hour on a current
           GPU); not run here.
Runtime:   untested; see experiments/RESULTS.md.
Result:    no published DDPM bits/dim for Fashion-MNIST in [-1, 1]; samples should show
           recognisable garments of the requested class at guidance scale 2.

The same model, guidance and schedule as experiments/ddpm_mnist.py (see its docstring).
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "ddpm_mnist_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddpm_mnist.py"))
_mnist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mnist)


def get_config(arg=None):
  return _mnist.get_config(arg, dataset="fashion_mnist")
