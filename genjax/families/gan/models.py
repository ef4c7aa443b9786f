"""Generators and discriminators of the GAN family, as Flax Linen modules.

Three architectures, each a generator / discriminator pair:

  dcgan         Radford et al. 2016, in the form of the DCGAN-tensorflow reference code that
                PacGAN (Lin et al. 2018) and WGAN-GP (Gulrajani et al. 2017) start from:
                G projects z to (H/2^k)x(W/2^k)x widths[0] and doubles the resolution k times
                with 5x5 stride-2 transposed convolutions; D halves it with 5x5 stride-2
                convolutions and LeakyReLU(0.2), then a dense logit.
  sngan_cnn     the "standard CNN" of Miyato et al. 2018 (Table 3): G 4x4 deconvolutions, D
                alternating 3x3 stride-1 / 4x4 stride-2 convolutions with LeakyReLU(0.1).
  sngan_resnet  the ResNet of Miyato et al. 2018 (Table 4, after Gulrajani et al. 2017): G with
                up-sampling residual blocks, D with two down-sampling and two plain blocks,
                ReLU and global sum pooling.

Sizes that do not halve evenly (28 -> 14 -> 7 -> 4) follow TF's "SAME" convention: the
transposed convolution that should go 4 -> 7 computes 8x8 and keeps the 7x7 window that TF's
conv2d_transpose with an explicit output_shape computes (`same_transpose_offset`).

Options shared by every discriminator: batch normalisation (`d_norm="batch"`), spectral
normalisation of every weight (flax.linen.SpectralNorm; its power-iteration vectors live in the
"spectral" collection), a projection head for class conditioning (Miyato & Koyama 2018), and
packing (PacGAN: the caller concatenates m images along channels, so D just sees C*m channels).
Generators take class labels through conditional batch normalisation.

Shapes: z_BxZ latents, y_B int labels (or None), images x_BxHxWxC in [-1, 1].
"""

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from genjax.nn import conv
from genjax.nn.norm import BatchNorm

SPECTRAL = "spectral"  # the variable collection of SpectralNorm's power-iteration state


def weight_init(arch: str):
  """DCGAN: "all weights were initialized from a zero-centered Normal distribution with standard
  deviation 0.02" (Radford et al. 2016, Sec. 4), as DCGAN-tensorflow does; the SNGAN networks keep
  Flax's LeCun-normal default, the Chainer default of Miyato et al.'s code."""
  return nn.initializers.normal(0.02) if arch == "dcgan" else nn.linear.default_kernel_init


def halvings(size: int, times: int) -> Tuple[int, ...]:
  """The resolutions from `size` down, halving `times` times with ceil (TF "SAME" stride 2):
  halvings(28, 4) = (28, 14, 7, 4, 2)."""
  out = [size]
  for _ in range(times):
    out.append(-(-out[-1] // 2))
  return tuple(out)


def same_transpose_offset(n_in: int, n_out: int, kernel: int, stride: int = 2) -> int:
  """Where TF's conv2d_transpose(output size n_out) sits inside the stride * n_in output of a
  "SAME" transposed convolution: it is the gradient of a SAME convolution of an n_out input,
  which pads max((n_in - 1) * stride + kernel - n_out, 0) // 2 below, against that of the
  stride * n_in input. E.g. 4 -> 7 with a 5x5 kernel is rows 1..7 of the 8, not 0..6."""
  pad_lo = lambda size: max((n_in - 1) * stride + kernel - size, 0) // 2
  return pad_lo(n_out) - pad_lo(stride * n_in)


# ----------------------------------------------------------------------------------------------
# Normalisation layers
# ----------------------------------------------------------------------------------------------


class ConditionalBatchNorm(nn.Module):
  """BatchNorm whose scale and offset are looked up per class (de Vries et al. 2017), or plain
  learned scale/offset when `num_classes` is None. Statistics span the global batch
  (genjax.nn.norm.BatchNorm)."""

  num_classes: Optional[int] = None
  momentum: float = 0.9

  @nn.compact
  def __call__(self, x_BxHxWxC, y_B, train: bool):
    if self.num_classes is None:
      return BatchNorm(use_running_average=not train, momentum=self.momentum)(x_BxHxWxC)
    h = BatchNorm(use_running_average=not train, momentum=self.momentum, use_scale=False,
                  use_bias=False)(x_BxHxWxC)
    channels = x_BxHxWxC.shape[-1]
    gamma_BxC = nn.Embed(self.num_classes, channels, embedding_init=nn.initializers.ones, name="gamma")(y_B)
    beta_BxC = nn.Embed(self.num_classes, channels, embedding_init=nn.initializers.zeros, name="beta")(y_B)
    return h * gamma_BxC[:, None, None, :] + beta_BxC[:, None, None, :]


# ----------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------


class Generator(nn.Module):
  """z_BxZ (and labels y_B) -> images f32[B,H,W,C] in [-1, 1].

  `widths` are the channels from the coarsest resolution to the finest hidden one; the number of
  resolution doublings is len(widths) for dcgan and len(widths) - 1 for the sngan architectures
  (which finish with a stride-1 3x3 convolution).
  """

  arch: str
  out_shape: Tuple[int, int, int]
  widths: Sequence[int]
  kernel_size: int = 5
  norm: bool = True
  num_classes: Optional[int] = None
  momentum: float = 0.9
  dtype: Any = jnp.float32

  def _norm(self, h, y_B, train):
    if not self.norm:
      return h
    return ConditionalBatchNorm(self.num_classes, self.momentum)(h, y_B, train)

  @nn.compact
  def __call__(self, z_BxZ, y_B=None, train: bool = True):
    H, W, C = self.out_shape
    doublings = len(self.widths) if self.arch == "dcgan" else len(self.widths) - 1
    sizes_h, sizes_w = halvings(H, doublings)[::-1], halvings(W, doublings)[::-1]
    if self.arch != "dcgan" and (H % 2**doublings or W % 2**doublings):
      raise ValueError(f"The {self.arch} generator doubles the resolution {doublings} times, so the "
                       f"image side must be a multiple of {2**doublings}; got {H}x{W}. Change model.g_widths.")
    # Layers followed by BatchNorm carry no bias: BN removes it, and Adam would turn its
    # (mathematically zero, numerically tiny) gradient into full-size random steps.
    init = weight_init(self.arch)
    h = nn.Dense(sizes_h[0] * sizes_w[0] * self.widths[0], use_bias=not self.norm, kernel_init=init,
                 dtype=self.dtype)(z_BxZ.astype(self.dtype))
    h = h.reshape(-1, sizes_h[0], sizes_w[0], self.widths[0])

    if self.arch == "sngan_resnet":
      for width in self.widths[1:]:
        h = GeneratorBlock(width, self.num_classes, self.momentum, self.dtype)(h, y_B, train)
      h = nn.relu(self._norm(h, y_B, train))
      h = nn.Conv(C, (3, 3), dtype=self.dtype)(h)
      return jnp.tanh(h).astype(jnp.promote_types(self.dtype, jnp.float32))

    h = nn.relu(self._norm(h, y_B, train))
    k = (self.kernel_size, self.kernel_size)
    out_widths = list(self.widths[1:]) + ([C] if self.arch == "dcgan" else [])
    for i, width in enumerate(out_widths):
      last = i == len(out_widths) - 1 and self.arch == "dcgan"
      h = conv.ConvTranspose(width, k, (2, 2), "SAME", use_bias=last or not self.norm, kernel_init=init,
                             dtype=self.dtype)(h)
      off_h, off_w = (same_transpose_offset(n, m, self.kernel_size) for n, m in
                      ((sizes_h[i], sizes_h[i + 1]), (sizes_w[i], sizes_w[i + 1])))
      h = h[:, off_h:off_h + sizes_h[i + 1], off_w:off_w + sizes_w[i + 1]]  # 4 -> 8 -> keep 7 where odd
      if not last:
        h = nn.relu(self._norm(h, y_B, train))
    if self.arch == "sngan_cnn":
      h = nn.Conv(C, (3, 3), dtype=self.dtype)(h)
    return jnp.tanh(h).astype(jnp.promote_types(self.dtype, jnp.float32))


class GeneratorBlock(nn.Module):
  """BN-ReLU-up2x-conv3x3-BN-ReLU-conv3x3, plus an up-sampled 1x1-conv shortcut."""

  width: int
  num_classes: Optional[int]
  momentum: float
  dtype: Any

  @nn.compact
  def __call__(self, x_BxHxWxC, y_B, train):
    up = lambda t: jnp.repeat(jnp.repeat(t, 2, axis=1), 2, axis=2)  # nearest-neighbour 2x
    norm = lambda: ConditionalBatchNorm(self.num_classes, self.momentum)
    h = up(nn.relu(norm()(x_BxHxWxC, y_B, train)))
    h = nn.Conv(self.width, (3, 3), use_bias=False, dtype=self.dtype)(h)  # BN follows
    h = nn.relu(norm()(h, y_B, train))
    h = nn.Conv(self.width, (3, 3), dtype=self.dtype)(h)
    shortcut = nn.Conv(self.width, (1, 1), dtype=self.dtype)(up(x_BxHxWxC))
    return h + shortcut


# ----------------------------------------------------------------------------------------------
# Discriminators
# ----------------------------------------------------------------------------------------------


class _SNLayers(nn.Module):
  """Mixin: `self.layer(module, x, update_stats)` applies a layer, spectrally normalised when asked."""

  spectral_norm: bool = False

  def layer(self, module, x, update_stats: bool):
    if self.spectral_norm:
      return nn.SpectralNorm(module, collection_name=SPECTRAL)(x, update_stats=update_stats)
    return module(x)


class Discriminator(_SNLayers):
  """Images x_BxHxWx(C*pack) (and labels y_B) -> logits f32[B].

  `train` selects batch statistics for BatchNorm; `update_stats` advances spectral
  normalisation's power iteration (False inside gradient penalties, which must not move it).
  """

  arch: str = "dcgan"
  widths: Sequence[int] = (64, 128, 256, 512)
  kernel_size: int = 5
  norm: bool = True
  num_classes: Optional[int] = None
  momentum: float = 0.9
  dtype: Any = jnp.float32

  def _norm(self, h, train):
    if not self.norm:
      return h
    return BatchNorm(use_running_average=not train, momentum=self.momentum)(h)

  @nn.compact
  def __call__(self, x_BxHxWxC, y_B=None, train: bool = True, update_stats: bool = True):
    h = x_BxHxWxC.astype(self.dtype)
    if self.arch == "dcgan":
      k = (self.kernel_size, self.kernel_size)
      for i, width in enumerate(self.widths):
        bias = i == 0 or not self.norm  # no bias before BatchNorm (see Generator)
        h = self.layer(conv.Conv(width, k, strides=(2, 2), padding="SAME", use_bias=bias,
                                 kernel_init=weight_init(self.arch), dtype=self.dtype), h, update_stats)
        h = nn.leaky_relu(h if i == 0 else self._norm(h, train), 0.2)
      features_BxF = h.reshape(h.shape[0], -1)
    elif self.arch == "sngan_cnn":
      for i, width in enumerate(self.widths):
        h = self.layer(nn.Conv(width, (3, 3), use_bias=i == 0 or not self.norm, dtype=self.dtype), h,
                       update_stats)
        h = nn.leaky_relu(h if i == 0 else self._norm(h, train), 0.1)
        if i < len(self.widths) - 1:
          h = self.layer(conv.Conv(width, (4, 4), strides=(2, 2), use_bias=not self.norm, dtype=self.dtype),
                         h, update_stats)
          h = nn.leaky_relu(self._norm(h, train), 0.1)
      features_BxF = h.reshape(h.shape[0], -1)
    elif self.arch == "sngan_resnet":
      for i, width in enumerate(self.widths):
        h = DiscriminatorBlock(width=width, down=i < 2, first=i == 0, spectral_norm=self.spectral_norm,
                               dtype=self.dtype)(h, update_stats)
      features_BxF = jnp.sum(nn.relu(h), axis=(1, 2))  # global sum pooling
    else:
      raise ValueError(f"unknown discriminator architecture {self.arch!r}")

    logits_B = self.layer(nn.Dense(1, kernel_init=weight_init(self.arch), dtype=self.dtype), features_BxF,
                          update_stats)[:, 0]
    if self.num_classes is not None:
      # Projection discriminator: logit += <embed(y), features>.
      embed_BxF = self.layer(nn.Embed(self.num_classes, features_BxF.shape[-1], name="projection"),
                             y_B, update_stats)
      logits_B = logits_B + jnp.sum(embed_BxF.astype(self.dtype) * features_BxF, axis=-1)
    return logits_B.astype(jnp.promote_types(self.dtype, jnp.float32))  # f32 logits from bf16


class DiscriminatorBlock(_SNLayers):
  """(ReLU-)conv3x3-ReLU-conv3x3(-avgpool) plus a 1x1-conv(-avgpool) shortcut. The first block
  takes the images, so it starts without ReLU and pools before its shortcut convolution."""

  width: int = 128
  down: bool = True
  first: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC, update_stats):
    pool = lambda t: nn.avg_pool(t, (2, 2), strides=(2, 2), padding="SAME") if self.down else t
    h = x_BxHxWxC if self.first else nn.relu(x_BxHxWxC)
    h = self.layer(nn.Conv(self.width, (3, 3), dtype=self.dtype), h, update_stats)
    h = self.layer(nn.Conv(self.width, (3, 3), dtype=self.dtype), nn.relu(h), update_stats)
    h = pool(h)
    if self.first:
      shortcut = self.layer(nn.Conv(self.width, (1, 1), dtype=self.dtype), pool(x_BxHxWxC), update_stats)
    elif self.down or x_BxHxWxC.shape[-1] != self.width:
      shortcut = pool(self.layer(nn.Conv(self.width, (1, 1), dtype=self.dtype), x_BxHxWxC, update_stats))
    else:
      shortcut = x_BxHxWxC
    return h + shortcut
