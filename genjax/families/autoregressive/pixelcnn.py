"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders") over binary images: p(x) = prod_ij p(x_ij | pixels before ij in raster order),
each factor a Bernoulli whose logit the network computes for all pixels in one pass.

Shapes: B batch, H x W image (one channel), C hidden channels.

  x {0,1}[B,H,W,1] -> first GatedBlock (kernel first_kernel_size, horizontal mask A)
  -> num_layers - 1 GatedBlocks (kernel kernel_size, mask B, residual)
  -> ReLU, 1x1 conv (output_channels), ReLU, 1x1 conv -> logits f32[B,H,W,1]

The loss is the exact negative log-likelihood in nats per image (summed over pixels);
bits per dimension are logged beside it. Data batches hold -1/1 images; they are mapped to {0,1}.
"""

import dataclasses
import functools
import math
from typing import Any, Dict

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.config import ConfigError, Experiment
from genjax.core import step as step_lib
from genjax.data.info import DataInfo
from genjax.families import base
from genjax.families.autoregressive import sampling
from genjax.families.base import NoOptions
from genjax.nn.losses import bernoulli_nll
from genjax.nn.masked_conv import GatedBlock


@dataclasses.dataclass(frozen=True)
class PixelCNNConfig:
  """Gated PixelCNN hyper-parameters; the defaults are the paper's binarized-MNIST model."""

  num_layers: int = 15
  channels: int = 128
  kernel_size: int = 3
  first_kernel_size: int = 7
  output_channels: int = 512


class PixelCNN(nn.Module):
  """x f32[B,H,W,1] in {0,1} -> logits f32[B,H,W,1] of p(x_ij = 1 | x before ij)."""

  num_layers: int = 15
  channels: int = 128
  kernel_size: int = 3
  first_kernel_size: int = 7
  output_channels: int = 512
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWx1):
    # Centred input (-1/1), so the convolutions' zero padding (outside the image) differs
    # from both pixel values.
    x_BxHxWx1 = (2.0 * x_BxHxWx1 - 1.0).astype(self.dtype)
    v_BxHxWxC, h_BxHxWxC = x_BxHxWx1, x_BxHxWx1
    for i in range(self.num_layers):
      v_BxHxWxC, h_BxHxWxC = GatedBlock(
        self.channels,
        self.first_kernel_size if i == 0 else self.kernel_size,
        first=i == 0,
        dtype=self.dtype,
        name=f"gated_{i}",
      )(v_BxHxWxC, h_BxHxWxC)
    y_BxHxWxO = nn.Conv(self.output_channels, (1, 1), dtype=self.dtype, name="out_hidden")(nn.relu(h_BxHxWxC))
    logits_BxHxWx1 = nn.Conv(1, (1, 1), dtype=self.dtype, name="out_logits")(nn.relu(y_BxHxWxO))
    return logits_BxHxWx1.astype(jnp.float32)


def check_config(cfg: PixelCNNConfig, info: DataInfo) -> None:
  if info.kind != "image" or len(info.shape) != 3 or info.shape[-1] != 1 or not info.binary:
    raise ConfigError(
      f"the PixelCNN models binary one-channel images, but data {info.name!r} is "
      f"{info.kind} {info.shape} (binary={info.binary}): use binarized_mnist, or "
      f"--config.data.binarize=dynamic/threshold with mnist."
    )
  if cfg.num_layers <= 0:
    raise ConfigError(f"config.model.num_layers = {cfg.num_layers} must be positive.")
  if cfg.kernel_size % 2 == 0 or cfg.first_kernel_size % 2 == 0:
    raise ConfigError(
      f"config.model.kernel_size ({cfg.kernel_size}) and first_kernel_size ({cfg.first_kernel_size}) must be odd."
    )


@dataclasses.dataclass(frozen=True)
class Model:
  """What the pure functions take as `model`: the network and the image size."""

  network: PixelCNN
  height: int
  width: int


def make_model(cfg: PixelCNNConfig, info: DataInfo, dtype=jnp.float32) -> Model:
  check_config(cfg, info)
  network = PixelCNN(
    num_layers=cfg.num_layers,
    channels=cfg.channels,
    kernel_size=cfg.kernel_size,
    first_kernel_size=cfg.first_kernel_size,
    output_channels=cfg.output_channels,
    dtype=jnp.dtype(dtype),
  )
  return Model(network, info.shape[0], info.shape[1])


# ----------------------------------------------------------------------------------------------
# Pure functions: loss, evaluation, sampling (call them under your own jax.jit)
# ----------------------------------------------------------------------------------------------


def image_nll(params, image_BxHxWx1, model: Model):
  """f32[B]: -log p(x) in nats per image, x = (image + 1) / 2 in {0, 1}."""
  x_BxHxWx1 = (image_BxHxWx1 > 0).astype(jnp.float32)
  logits_BxHxWx1 = model.network.apply({"params": params}, x_BxHxWx1)
  return bernoulli_nll(logits_BxHxWx1, x_BxHxWx1).sum(axis=(1, 2, 3))


def with_bits(model: Model, means):
  nll = means["nll_nats"]
  return {"loss": nll, "nll_nats": nll, "bits_per_dim": nll / (model.height * model.width * math.log(2.0))}


def loss(params, batch, rng, model: Model):
  """The exact NLL in nats per image, averaged over the batch: (loss, {"nll_nats": loss})."""
  del rng
  nll = image_nll(params, batch["image"], model).mean()
  return nll, {"nll_nats": nll}


def eval_sums(variables, batch, rng, model: Model):
  """({"nll_nats": sum of the real examples' NLLs}, their number)."""
  del rng
  nll_B = image_nll(variables["params"], batch["image"], model)
  return step_lib.masked_sums({"nll_nats": nll_B}, step_lib.batch_mask(batch, nll_B.shape[0]))


CONFIGS = (PixelCNNConfig,)
SampleOptions = NoOptions


def sample(variables, rng, n: int, model: Model, options: SampleOptions = SampleOptions()):
  """f32[n,H,W,1] in {-1, 1}, drawn pixel by pixel in one compiled loop (H*W forward passes)."""
  del options
  return _sample(variables["params"], rng, n, model)


@functools.partial(jax.jit, static_argnames=("model", "n"))
def _sample(params, rng, n: int, model: Model):
  logits_fn = lambda x: model.network.apply({"params": params}, x)  # noqa: E731
  return 2.0 * sampling.generate_binary_image(logits_fn, rng, n, model.height, model.width) - 1.0


# ----------------------------------------------------------------------------------------------
# The adapter the trainer uses
# ----------------------------------------------------------------------------------------------


def init(rng, model: Model):
  """Fresh variables: {"params": ...}."""
  return {"params": model.network.init(rng, jnp.zeros((1, model.height, model.width, 1), jnp.float32))["params"]}


def finish(model: Model):
  """The NLL in bits per dimension beside the nats."""
  return functools.partial(with_bits, model)


updates = base.loss_updates(loss, finish)

_jitted_eval_sums = jax.jit(
  lambda batch, params, model: eval_sums({"params": params}, batch, None, model), static_argnums=2
)


def evaluate(variables, batches, rng, model: Model) -> Dict[str, float]:
  """Exact test NLL: the mean over every real example of the batches given."""
  del rng
  means, count, flops = step_lib.exact_means(_jitted_eval_sums, batches, variables["params"], model)
  bits = with_bits(model, means)["bits_per_dim"]
  return {"nll_nats": means["nll_nats"], "bits_per_dim": bits, "examples": count, "flops": flops}


def notes(exp: Experiment, model: Model) -> str:
  return "PixelCNN: exact NLL in nats per image; sampling runs H*W forward passes"
