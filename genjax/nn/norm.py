"""BatchNorm and Dropout that see the global batch in every parallel mode.

Flax's layers act on the examples a device holds. Under pmap that is one device's share, so
genjax's versions ask the parallel layer (genjax.core.parallel) for the device axis of the trace in
progress: BatchNorm averages its statistics over it, and Dropout cuts this device's rows out of
the mask it would draw for the whole batch. Under jit and on one device they are Flax's layers.
Same names, parameters and collections as Flax's, so checkpoints do not change.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.core import parallel


class BatchNorm(nn.BatchNorm):
  """flax.linen.BatchNorm whose statistics span the global batch (axis_name from the parallel layer)."""

  def __post_init__(self):
    if self.axis_name is None:
      object.__setattr__(self, "axis_name", parallel.batch_stats_axis())
    super().__post_init__()


class Dropout(nn.Dropout):
  """flax.linen.Dropout whose mask, under pmap, is this device's rows of the global batch's mask."""

  @nn.compact
  def __call__(self, inputs, deterministic: Optional[bool] = None, rng: Optional[jax.Array] = None):
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    if self.rate == 0.0 or deterministic:
      return inputs
    if self.rate == 1.0:
      return jnp.zeros_like(inputs)
    keep = 1.0 - self.rate
    rng = self.make_rng(self.rng_collection) if rng is None else rng
    shape = [1 if d in self.broadcast_dims else n for d, n in enumerate(inputs.shape)]
    draw = lambda s: jax.random.bernoulli(rng, p=keep, shape=s)
    # Flax's own draw under jit; under pmap this device's rows of the same global draw.
    mask = draw(shape) if parallel.mapped_axis() is None or shape[0] == 1 else parallel.global_draw(draw, shape)
    mask = jnp.broadcast_to(mask, inputs.shape)
    return jax.lax.select(mask, inputs / keep, jnp.zeros_like(inputs))
