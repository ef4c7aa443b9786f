"""A check, not a config: genjax's pythae VAE (experiments/vae_pythae_binarized_mnist.py) trained
from PyTorch's nn.Linear initialisation instead of flax's, to measure how much of the gap to
pythae's 89.78 nats the initialisation accounts for (experiments/RESULTS.md, issue #32 item 3).

flax starts Dense kernels from LeCun normal and biases from zero; nn.Linear draws kernels and
biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in)). This script replaces every parameter of the VAE's
initial state with such a draw (fan_in from its layer's kernel) and trains with genjax's loop;
evaluate the run as the config says:

    python experiments/reference/vae_pythae_torch_init.py WORKDIR
    python -m genjax.evaluate --workdir WORKDIR --seed S        (S = 0..4)
"""

import os
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from genjax import config as config_lib  # noqa: E402
from genjax.families import vae  # noqa: E402
from genjax.trainer import loop  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vae_pythae_binarized_mnist.py")
_flax_init = vae.init


def torch_linear_init(rng, model):
  """vae.init with every kernel and bias redrawn from U(+-1/sqrt(fan_in)) of its layer."""
  variables = _flax_init(rng, model)
  leaves, tree = jax.tree_util.tree_flatten_with_path(variables["params"])
  fan_in = {jax.tree_util.keystr(p[:-1]): v.shape[0] for p, v in leaves if p[-1].key == "kernel"}
  keys = jax.random.split(jax.random.fold_in(rng, 7), len(leaves))
  redrawn = []
  for (path, value), key in zip(leaves, keys):
    bound = 1.0 / fan_in[jax.tree_util.keystr(path[:-1])] ** 0.5
    redrawn.append(jax.random.uniform(key, value.shape, value.dtype, -bound, bound))
  return {**variables, "params": jax.tree_util.tree_unflatten(tree, redrawn)}


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit("usage: python experiments/reference/vae_pythae_torch_init.py WORKDIR")
  vae.init = torch_linear_init
  loop.train(config_lib.load_config_file(CONFIG), sys.argv[1])
