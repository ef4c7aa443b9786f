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

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
import flax.linen as nn

from genjax.config import ConfigError, Experiment
from genjax.data.info import DataInfo
from genjax.families.base import Family, eval_step_from_sums, exact_mean
from genjax.families.autoregressive import sampling
from genjax.nn.masked_conv import GatedBlock
from genjax.train.optim import make_optimizer
from genjax.train.parallel import axis_name_for, mean_over_data
from genjax.train.state import TrainState, apply_gradients


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
          self.channels, self.first_kernel_size if i == 0 else self.kernel_size, first=i == 0,
          dtype=self.dtype, name=f"gated_{i}")(v_BxHxWxC, h_BxHxWxC)
    y_BxHxWxO = nn.Conv(self.output_channels, (1, 1), dtype=self.dtype, name="out_hidden")(nn.relu(h_BxHxWxC))
    logits_BxHxWx1 = nn.Conv(1, (1, 1), dtype=self.dtype, name="out_logits")(nn.relu(y_BxHxWxO))
    return logits_BxHxWx1.astype(jnp.float32)


def build(exp: Experiment, info: DataInfo) -> Family:
  config = exp.model
  if info.kind != "image" or len(info.shape) != 3 or info.shape[-1] != 1 or not info.binary:
    raise ConfigError(f"the PixelCNN models binary one-channel images, but data {info.name!r} is "
                      f"{info.kind} {info.shape} (binary={info.binary}): use binarized_mnist, or "
                      f"--config.data.binarize=dynamic/threshold with mnist.")
  if config.kernel_size % 2 == 0 or config.first_kernel_size % 2 == 0:
    raise ConfigError(f"config.model.kernel_size ({config.kernel_size}) and first_kernel_size "
                      f"({config.first_kernel_size}) must be odd.")
  H, W, _ = info.shape
  model = PixelCNN(num_layers=config.num_layers, channels=config.channels,
                   kernel_size=config.kernel_size, first_kernel_size=config.first_kernel_size,
                   output_channels=config.output_channels, dtype=jnp.dtype(exp.train.compute_dtype))
  axis_name = axis_name_for(exp.parallel.mode)
  tx = make_optimizer(exp.optim, exp.train.steps)
  ema_decay = exp.optim.ema_decay

  def image_nll(params, image_BxHxWx1):
    """f32[B]: -log p(x) in nats per image, x = (image + 1) / 2 in {0, 1}."""
    x_BxHxWx1 = (image_BxHxWx1 > 0).astype(jnp.float32)
    logits_BxHxWx1 = model.apply({"params": params}, x_BxHxWx1)
    return optax.sigmoid_binary_cross_entropy(logits_BxHxWx1, x_BxHxWx1).sum(axis=(1, 2, 3))

  def metrics_of(nll):
    return {"loss": nll, "nll_nats": nll, "bits_per_dim": nll / (H * W * math.log(2.0))}

  def init(rng, example_batch):
    image_1xHxWx1 = jnp.asarray(example_batch["image"])[:1]
    params = model.init(rng, (image_1xHxWx1 > 0).astype(jnp.float32))["params"]
    return TrainState.create(params, tx, ema=ema_decay is not None)

  def train_step(state, batch, rng):
    nll, grads = jax.value_and_grad(lambda p: image_nll(p, batch["image"]).mean())(state.params)
    grads, nll = mean_over_data((grads, nll), axis_name)
    state = apply_gradients(state, grads, tx, ema_decay=ema_decay, step=state.step + 1)
    return state, metrics_of(nll)

  def nll_sums(state, batch):
    nll_B = image_nll(state.variables()["params"], batch["image"])
    mask_B = batch.get("mask", jnp.ones_like(nll_B))
    return jnp.sum(nll_B * mask_B), jnp.sum(mask_B)

  eval_step = eval_step_from_sums(nll_sums, metrics_of, axis_name)
  jitted_sums = jax.jit(nll_sums)

  def evaluate(state, batches, rng):
    """Exact test NLL: the mean over every real example of the batches given."""
    nll, count = exact_mean(jitted_sums, state, batches)
    return {"nll_nats": nll, "bits_per_dim": nll / (H * W * math.log(2.0)), "examples": count}

  @jax.jit
  def _generate(params, rng, shape_n):
    logits_fn = lambda x: model.apply({"params": params}, x)
    return sampling.generate_binary_image(logits_fn, rng, shape_n.shape[0], H, W)

  def sample(variables, rng, n, **unused):
    """f32[n,H,W,1] in {-1, 1}, drawn pixel by pixel in one compiled loop."""
    x_nxHxWx1 = _generate(variables["params"], rng, jnp.zeros((n,), jnp.int8))
    return 2.0 * x_nxHxWx1 - 1.0

  return Family(init=init, train_step=train_step, eval_step=eval_step, sample=sample,
                output="image", evaluate=evaluate,
                notes="PixelCNN: exact NLL in nats per image; sampling runs H*W forward passes")
