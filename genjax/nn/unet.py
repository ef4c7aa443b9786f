"""The U-Net of DDPM (Ho et al. 2020, Appendix B), as a Flax Linen module.

A PixelCNN++-style U-Net: wide residual blocks with GroupNorm(32), a sinusoidal time embedding
added inside every residual block, single-head self-attention at the resolutions listed in
`attn_resolutions` and once in the middle, dropout inside the residual blocks, and one
resolution level per entry of `ch_mult` (channels ch * mult). The same layer order and
initialisation as the paper's TensorFlow code: with ch=128, ch_mult=(1, 2, 2, 2),
num_res_blocks=2, attn_resolutions=(16,) on 32x32x3 images it has the paper's 35.7M parameters.

Parameters are float32; convolutions, dense layers and attention compute in `dtype`
(bfloat16 on accelerators), while GroupNorm statistics are always float32.
Class conditioning (for classifier-free guidance) adds a learned label embedding to the time
embedding; the label `num_classes` is the "null" label of unconditional evaluations.
"""

import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax import errors
from genjax.nn.embeddings import sinusoidal_embedding
from genjax.nn.norm import Dropout, GroupNorm

# The TensorFlow code's default_init(scale=1.0): variance scaling, fan_avg, uniform.
_default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
# Its init_scale=0. layers (last conv of each block, attention output, output conv) start at
# zero, so every residual block starts as the identity.
_zero_init = nn.initializers.zeros


def _group_norm(x, name: str):
  """GroupNorm(32) whose statistics and affine transform run in float32; cast back to x's dtype."""
  y = GroupNorm(num_groups=min(32, x.shape[-1]), epsilon=1e-6, dtype=jnp.float32, name=name)(x.astype(jnp.float32))
  return y.astype(x.dtype)


class ResBlock(nn.Module):
  """GN -> swish -> conv3x3 -> + Dense(swish(temb)) -> GN -> swish -> dropout -> conv3x3, plus a
  1x1 (NIN) shortcut when the channel count changes. x_BxHxWxC, temb_BxE -> f[B,H,W,out_ch]."""

  out_ch: int
  dropout: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC, temb_BxE, train: bool):
    conv = lambda ch, k, name, init=_default_init: nn.Conv(
      ch, (k, k), padding="SAME", dtype=self.dtype, kernel_init=init, name=name
    )
    h = conv(self.out_ch, 3, "conv1")(nn.swish(_group_norm(x_BxHxWxC, "norm1")))
    h = (
      h
      + nn.Dense(self.out_ch, dtype=self.dtype, kernel_init=_default_init, name="temb_proj")(nn.swish(temb_BxE))[
        :, None, None, :
      ]
    )
    h = nn.swish(_group_norm(h, "norm2"))
    h = Dropout(self.dropout, deterministic=not train)(h)
    h = conv(self.out_ch, 3, "conv2", _zero_init)(h)
    if x_BxHxWxC.shape[-1] != self.out_ch:
      x_BxHxWxC = conv(self.out_ch, 1, "nin_shortcut")(x_BxHxWxC)
    return x_BxHxWxC + h


class AttnBlock(nn.Module):
  """Self-attention over the H*W positions, with a residual connection. x_BxHxWxC -> same."""

  num_heads: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    B, H, W, C = x_BxHxWxC.shape
    if C % self.num_heads:
      raise errors.ConfigError(f"AttnBlock: {C} channels do not split into {self.num_heads} heads.")
    h = _group_norm(x_BxHxWxC, "norm")
    dense = lambda name, init=_default_init: nn.Dense(C, dtype=self.dtype, kernel_init=init, name=name)
    split = lambda t: t.reshape(B, H * W, self.num_heads, C // self.num_heads)
    q_BxLxNxK, k_BxLxNxK, v_BxLxNxK = (split(dense(n)(h)) for n in ("q", "k", "v"))
    out_BxLxNxK = attention(q_BxLxNxK, k_BxLxNxK, v_BxLxNxK)
    return x_BxHxWxC + dense("proj_out", _zero_init)(out_BxLxNxK.reshape(B, H, W, C))


def attention(q_BxLxNxK, k_BxLxNxK, v_BxLxNxK):
  """softmax(q k^T / sqrt(K)) v over the L positions, per head: f[B, L, N, K]. One head (DDPM's
  attention) is three batched matrix products with no transposes (jax.nn.dot_product_attention
  moves the head axis, which XLA:CPU's backward pass did with ~40 ms of copies a step of the
  ddpm_mnist.py U-Net); several heads go to jax.nn.dot_product_attention."""
  if q_BxLxNxK.shape[2] != 1:
    return jax.nn.dot_product_attention(q_BxLxNxK, k_BxLxNxK, v_BxLxNxK)
  q, k, v = (t[:, :, 0, :] for t in (q_BxLxNxK, k_BxLxNxK, v_BxLxNxK))
  logits_BxLxL = jnp.einsum("blk,bmk->blm", q, k) / math.sqrt(q.shape[-1])
  weights_BxLxL = jax.nn.softmax(logits_BxLxL.astype(jnp.float32), axis=-1).astype(v.dtype)
  return jnp.einsum("blm,bmk->blk", weights_BxLxL, v)[:, :, None, :]


class UNet(nn.Module):
  """DDPM's U-Net: (x_BxHxWxC, t_B[, label_B]) -> f32[B, H, W, out_ch].

  t_B holds time-step indices (or any real times: they only enter the sinusoidal embedding).
  label_B (int32 in [0, num_classes], num_classes meaning "no label") is required when
  num_classes is set and ignored otherwise.
  """

  ch: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  num_heads: int = 1
  out_ch: Optional[int] = None  # default: the input's channel count
  num_classes: Optional[int] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC, t_B, label_B=None, train: bool = False, augment_BxA=None):
    B, H, W, C = x_BxHxWxC.shape
    if augment_BxA is not None:
      raise errors.ConfigError("UNet: DDPM's U-Net takes no augmentation labels (EDM's SongUNet does).")
    levels = len(self.ch_mult)
    if H % 2 ** (levels - 1) or W % 2 ** (levels - 1):
      raise errors.ConfigError(
        f"UNet: a {H}x{W} image cannot be halved {levels - 1} times (ch_mult={tuple(self.ch_mult)}); "
        f"use fewer levels, e.g. ch_mult=(1, 2, 2) for 28x28 (28 -> 14 -> 7)."
      )
    res_block = lambda ch, name: ResBlock(ch, self.dropout, self.dtype, name=name)
    attn_block = lambda name: AttnBlock(self.num_heads, self.dtype, name=name)
    conv = lambda ch, name, stride=1, init=_default_init: nn.Conv(
      ch, (3, 3), strides=(stride, stride), padding="SAME", dtype=self.dtype, kernel_init=init, name=name
    )

    temb_BxE = sinusoidal_embedding(t_B, self.ch).astype(self.dtype)
    temb_BxE = nn.Dense(4 * self.ch, dtype=self.dtype, kernel_init=_default_init, name="temb_dense0")(temb_BxE)
    temb_BxE = nn.Dense(4 * self.ch, dtype=self.dtype, kernel_init=_default_init, name="temb_dense1")(
      nn.swish(temb_BxE)
    )
    if self.num_classes is not None:
      if label_B is None:
        raise errors.ConfigError("UNet: this model is class-conditional; pass label_B (num_classes for 'no label').")
      temb_BxE = temb_BxE + nn.Embed(self.num_classes + 1, 4 * self.ch, name="label_embed")(label_B).astype(self.dtype)

    # Downsampling path; every output is kept for the skip connections.
    hs = [conv(self.ch, "conv_in")(x_BxHxWxC.astype(self.dtype))]
    for level, mult in enumerate(self.ch_mult):
      for block in range(self.num_res_blocks):
        h = res_block(self.ch * mult, f"down_{level}_res_{block}")(hs[-1], temb_BxE, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn_block(f"down_{level}_attn_{block}")(h)
        hs.append(h)
      if level != levels - 1:
        hs.append(conv(h.shape[-1], f"down_{level}_downsample", stride=2)(hs[-1]))

    h = res_block(hs[-1].shape[-1], "mid_res_0")(hs[-1], temb_BxE, train)
    h = attn_block("mid_attn")(h)
    h = res_block(h.shape[-1], "mid_res_1")(h, temb_BxE, train)

    # Upsampling path: each block takes one skip connection (num_res_blocks + 1 per level).
    for level in reversed(range(levels)):
      for block in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, hs.pop()], axis=-1)
        h = res_block(self.ch * self.ch_mult[level], f"up_{level}_res_{block}")(h, temb_BxE, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn_block(f"up_{level}_attn_{block}")(h)
      if level != 0:
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method="nearest")
        h = conv(c, f"up_{level}_upsample")(h)
    assert not hs, "every skip connection is used once"

    h = nn.swish(_group_norm(h, "norm_out"))
    return conv(self.out_ch or C, "conv_out", init=_zero_init)(h).astype(jnp.float32)


def count_params(module: nn.Module, image_shape, with_labels: bool = False) -> int:
  """The number of parameters of `module` on images of `image_shape` (H, W, C), counted from
  shapes alone with jax.eval_shape (nothing is allocated or computed)."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  t = jax.ShapeDtypeStruct((1,), jnp.int32)
  args = (x, t, jax.ShapeDtypeStruct((1,), jnp.int32)) if with_labels else (x, t)
  shapes = jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a), *args)
  return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))
