"""A tiny random AutoencoderKL saved as diffusers saves one (config.json and the weights file), for
the latent diffusion tests: what a user's --config.model.autoencoder folder holds."""

import json

import jax
import jax.numpy as jnp

from genjax.nn import autoencoder_kl


def save_tiny_autoencoder(folder, channels: int, block_out_channels=(32, 32), seed: int = 7):
  """(module, variables) of a random AutoencoderKL for `channels`-channel images (downsampling by
  2 ** (len(block_out_channels) - 1), 4 latent channels), saved in `folder`; every weight is
  perturbed so the encoder's moments depend on the image."""
  arch = dict(block_out_channels=tuple(block_out_channels), layers_per_block=1, latent_channels=4, norm_num_groups=8)
  module = autoencoder_kl.AutoencoderKL(in_channels=channels, out_channels=channels, **arch)
  f = 2 ** (len(block_out_channels) - 1)
  x = jnp.zeros((1, 2 * f, 2 * f, channels))
  variables = jax.jit(lambda r: module.init(r, x, r))(jax.random.key(seed))
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  variables = jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  autoencoder_kl.save_weights(variables, str(folder / "diffusion_pytorch_model.safetensors"))
  config = {"in_channels": channels, "out_channels": channels, **arch}
  config["block_out_channels"] = list(config["block_out_channels"])
  (folder / "config.json").write_text(json.dumps(config))
  return module, variables
