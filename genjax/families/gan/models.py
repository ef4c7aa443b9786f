"""Generators and discriminators of the GAN family, as Flax Linen modules.

Four architectures, each a generator / discriminator pair:

  dcgan         Radford et al. 2016, in the form of the DCGAN-tensorflow reference code that
                PacGAN (Lin et al. 2018) and WGAN-GP (Gulrajani et al. 2017) start from:
                G projects z to (H/2^k)x(W/2^k)x widths[0] and doubles the resolution k times
                with 5x5 stride-2 transposed convolutions; D halves it with 5x5 stride-2
                convolutions and LeakyReLU(0.2), then a dense logit.
  dcgan_mnist   DCGAN-tensorflow's MNIST networks (model.py, the y_dim branch): conditional by
                concatenating one-hot labels to every layer; G from a dense 1024 and a 7x7x128
                map through two 5x5 stride-2 deconvolutions, D two 5x5 stride-2 convolutions
                and a dense 1024.
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
import jax
import jax.numpy as jnp

from genjax import errors
from genjax.nn import conv
from genjax.nn.norm import BatchNorm

SPECTRAL = "spectral"  # the variable collection of SpectralNorm's power-iteration state


# The kernel size of each architecture's (transposed) convolutions: DCGAN 5x5 (DCGAN-tensorflow's
# ops.py), SNGAN's generator 4x4 deconvolutions (Miyato et al. 2018, Table 3).
KERNEL_SIZES = {"dcgan": 5, "dcgan_mnist": 5, "sngan_cnn": 4, "sngan_resnet": 3}


def weight_init(arch: str, scheme: str = "auto", layer: str = "dense", stride: int = 1):
  """Kernel initialiser of a layer ("dense", "conv" or "deconv" with `stride`).

  "normal": N(0, 0.02), "all weights were initialized from a zero-centered Normal distribution
  with standard deviation 0.02" (Radford et al. 2016, Sec. 4), as DCGAN-tensorflow does;
  "lecun": Flax's LeCun-normal default, the Chainer default of Miyato et al.'s code;
  "tflib": the WGAN-GP code's (tflib/ops): Glorot-uniform dense layers, He-uniform convolutions
  with std sqrt(4 / (fan_in + fan_out)), the stride dividing the fan of the strided side.
  "auto": normal for the DCGAN architectures, lecun for SNGAN's."""
  if scheme == "auto":
    scheme = "normal" if arch.startswith("dcgan") else "lecun"
  if scheme == "normal":
    return nn.initializers.normal(0.02)
  if scheme == "lecun":
    return nn.linear.default_kernel_init
  if scheme != "tflib":
    raise errors.ConfigError(f"unknown weight initialisation {scheme!r}")
  if layer == "dense":
    return nn.initializers.glorot_uniform()

  def he_uniform(key, shape, dtype=jnp.float32):
    k_h, k_w, fan_in_ch, fan_out_ch = shape  # Flax kernels: (kh, kw, in, out) for Conv and ConvTranspose
    fan_in, fan_out = fan_in_ch * k_h * k_w, fan_out_ch * k_h * k_w
    if layer == "deconv":
      fan_in /= stride**2
    else:
      fan_out /= stride**2
    limit = (4.0 / (fan_in + fan_out)) ** 0.5 * 3**0.5
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return he_uniform


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
    h = BatchNorm(use_running_average=not train, momentum=self.momentum, use_scale=False, use_bias=False)(x_BxHxWxC)
    channels = x_BxHxWxC.shape[-1]
    gamma_BxC = nn.Embed(self.num_classes, channels, embedding_init=nn.initializers.ones, name="gamma")(y_B)
    beta_BxC = nn.Embed(self.num_classes, channels, embedding_init=nn.initializers.zeros, name="beta")(y_B)
    return h * gamma_BxC[:, None, None, :] + beta_BxC[:, None, None, :]


# ----------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------


def _one_hot_maps(y_B, num_classes: int, h, w, dtype):
  """Labels as constant feature maps f[B,h,w,K] (DCGAN-tensorflow's conv_cond_concat)."""
  onehot = jax.nn.one_hot(y_B, num_classes, dtype=dtype)
  return jnp.broadcast_to(onehot[:, None, None, :], (onehot.shape[0], h, w, num_classes))


def _output(h, pixels: str):
  """The generator's last activation, as an image in [-1, 1]: tanh, or a sigmoid's [0, 1] image
  mapped there (2 sigmoid(h) - 1, i.e. tanh(h / 2)) for the references that keep pixels in [0, 1]."""
  return jnp.tanh(h) if pixels == "tanh" else 2.0 * jax.nn.sigmoid(h) - 1.0


class Generator(nn.Module):
  """z_BxZ (and labels y_B) -> images f32[B,H,W,C] in [-1, 1].

  `widths` are the channels from the coarsest resolution to the finest hidden one; the number of
  resolution doublings is len(widths) for dcgan and len(widths) - 1 for the sngan architectures
  (which finish with a stride-1 3x3 convolution). dcgan_mnist is DCGAN-tensorflow's MNIST
  generator: widths = (dense width, channels at H/4 and H/2), labels concatenated to every layer.
  `crop` says which window of an odd size's doubled output is kept ("tf": where TF's
  conv2d_transpose to that size lands; "top_left": the first rows and columns, as WGAN-GP's
  gan_mnist.py slices); `pixels` "sigmoid" ends in a sigmoid (see `_output`).
  """

  arch: str
  out_shape: Tuple[int, int, int]
  widths: Sequence[int]
  kernel_size: int = 5
  norm: bool = True
  num_classes: Optional[int] = None
  momentum: float = 0.9
  init_scheme: str = "auto"
  crop: str = "tf"
  pixels: str = "tanh"
  dtype: Any = jnp.float32

  def _norm(self, h, y_B, train):
    if not self.norm:
      return h
    return ConditionalBatchNorm(self.num_classes, self.momentum)(h, y_B, train)

  def _init(self, layer: str):
    return weight_init(self.arch, self.init_scheme, layer, stride=2)

  @nn.compact
  def __call__(self, z_BxZ, y_B=None, train: bool = True):
    if self.arch == "dcgan_mnist":
      return self._dcgan_mnist(z_BxZ, y_B, train)
    H, W, C = self.out_shape
    doublings = len(self.widths) if self.arch == "dcgan" else len(self.widths) - 1
    sizes_h, sizes_w = halvings(H, doublings)[::-1], halvings(W, doublings)[::-1]
    if self.arch != "dcgan" and (H % 2**doublings or W % 2**doublings):
      raise errors.ConfigError(
        f"The {self.arch} generator doubles the resolution {doublings} times, so the "
        f"image side must be a multiple of {2**doublings}; got {H}x{W}. Change model.g_widths."
      )
    # Layers followed by BatchNorm carry no bias: BN removes it, and Adam would turn its
    # (mathematically zero, numerically tiny) gradient into full-size random steps.
    h = nn.Dense(
      sizes_h[0] * sizes_w[0] * self.widths[0],
      use_bias=not self.norm,
      kernel_init=self._init("dense"),
      dtype=self.dtype,
    )(z_BxZ.astype(self.dtype))
    h = h.reshape(-1, sizes_h[0], sizes_w[0], self.widths[0])

    if self.arch == "sngan_resnet":
      for width in self.widths[1:]:
        h = GeneratorBlock(width, self.num_classes, self.momentum, self.dtype)(h, y_B, train)
      h = nn.relu(self._norm(h, y_B, train))
      h = nn.Conv(C, (3, 3), dtype=self.dtype)(h)
      return _output(h, self.pixels).astype(jnp.promote_types(self.dtype, jnp.float32))

    h = nn.relu(self._norm(h, y_B, train))
    k = (self.kernel_size, self.kernel_size)
    out_widths = list(self.widths[1:]) + ([C] if self.arch == "dcgan" else [])
    for i, width in enumerate(out_widths):
      last = i == len(out_widths) - 1 and self.arch == "dcgan"
      h = conv.ConvTranspose(
        width, k, (2, 2), "SAME", use_bias=last or not self.norm, kernel_init=self._init("deconv"), dtype=self.dtype
      )(h)
      h = self._crop(h, (sizes_h[i], sizes_h[i + 1]), (sizes_w[i], sizes_w[i + 1]))  # 4 -> 8 -> keep 7 where odd
      if not last:
        h = nn.relu(self._norm(h, y_B, train))
    if self.arch == "sngan_cnn":
      h = nn.Conv(C, (3, 3), dtype=self.dtype)(h)
    return _output(h, self.pixels).astype(jnp.promote_types(self.dtype, jnp.float32))

  def _crop(self, h, sizes_h, sizes_w):
    """The window of the doubled output that a transposed convolution to an odd size keeps."""
    if self.crop == "top_left":
      return h[:, : sizes_h[1], : sizes_w[1]]
    off_h, off_w = (same_transpose_offset(n, m, self.kernel_size) for n, m in (sizes_h, sizes_w))
    return h[:, off_h : off_h + sizes_h[1], off_w : off_w + sizes_w[1]]

  def _dcgan_mnist(self, z_BxZ, y_B, train):
    """DCGAN-tensorflow's MNIST generator (model.py, the y_dim branch): [z, y] -> dense 1024 ->
    BN, ReLU -> [., y] -> dense (H/4)(W/4)x128 -> BN, ReLU -> [., y maps] -> 5x5/2 deconvolution to
    (H/2)(W/2)x128 -> BN, ReLU -> [., y maps] -> 5x5/2 deconvolution to HxWxC -> sigmoid."""
    H, W, C = self.out_shape
    dense_width, ch = self.widths
    k = (self.kernel_size, self.kernel_size)
    onehot = jax.nn.one_hot(y_B, self.num_classes, dtype=self.dtype)
    bn = lambda t: BatchNorm(use_running_average=not train, momentum=self.momentum)(t)
    h = jnp.concatenate([z_BxZ.astype(self.dtype), onehot], -1)
    h = nn.relu(bn(nn.Dense(dense_width, use_bias=False, kernel_init=self._init("dense"), dtype=self.dtype)(h)))
    h = jnp.concatenate([h, onehot], -1)
    h = nn.Dense((H // 4) * (W // 4) * ch, use_bias=False, kernel_init=self._init("dense"), dtype=self.dtype)(h)
    h = nn.relu(bn(h)).reshape(-1, H // 4, W // 4, ch)
    h = jnp.concatenate([h, _one_hot_maps(y_B, self.num_classes, H // 4, W // 4, self.dtype)], -1)
    h = conv.ConvTranspose(ch, k, (2, 2), "SAME", use_bias=False, kernel_init=self._init("deconv"), dtype=self.dtype)(h)
    h = nn.relu(bn(h))
    h = jnp.concatenate([h, _one_hot_maps(y_B, self.num_classes, H // 2, W // 2, self.dtype)], -1)
    h = conv.ConvTranspose(C, k, (2, 2), "SAME", kernel_init=self._init("deconv"), dtype=self.dtype)(h)
    return _output(h, self.pixels).astype(jnp.promote_types(self.dtype, jnp.float32))


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
  `pixels` "sigmoid" reads images in [0, 1] (the [-1, 1] batch mapped first), as the references
  whose generators end in a sigmoid. dcgan_mnist is DCGAN-tensorflow's MNIST discriminator:
  widths = (df_dim, dense width), labels concatenated to every layer.
  """

  arch: str = "dcgan"
  widths: Sequence[int] = (64, 128, 256, 512)
  kernel_size: int = 5
  norm: bool = True
  num_classes: Optional[int] = None
  momentum: float = 0.9
  init_scheme: str = "auto"
  pixels: str = "tanh"
  dtype: Any = jnp.float32

  def _norm(self, h, train):
    if not self.norm:
      return h
    return BatchNorm(use_running_average=not train, momentum=self.momentum)(h)

  def _init(self, layer: str, stride: int = 2):
    return weight_init(self.arch, self.init_scheme, layer, stride)

  @nn.compact
  def __call__(self, x_BxHxWxC, y_B=None, train: bool = True, update_stats: bool = True):
    h = x_BxHxWxC.astype(self.dtype)
    if self.pixels == "sigmoid":
      h = (h + 1.0) / 2.0
    if self.arch == "dcgan_mnist":
      return self._dcgan_mnist(h, y_B, train, update_stats)
    if self.arch == "dcgan":
      k = (self.kernel_size, self.kernel_size)
      for i, width in enumerate(self.widths):
        bias = i == 0 or not self.norm  # no bias before BatchNorm (see Generator)
        h = self.layer(
          conv.Conv(
            width, k, strides=(2, 2), padding="SAME", use_bias=bias, kernel_init=self._init("conv"), dtype=self.dtype
          ),
          h,
          update_stats,
        )
        h = nn.leaky_relu(h if i == 0 else self._norm(h, train), 0.2)
      features_BxF = h.reshape(h.shape[0], -1)
    elif self.arch == "sngan_cnn":
      for i, width in enumerate(self.widths):
        h = self.layer(
          nn.Conv(width, (3, 3), use_bias=i == 0 or not self.norm, kernel_init=self._init("conv", 1), dtype=self.dtype),
          h,
          update_stats,
        )
        h = nn.leaky_relu(h if i == 0 else self._norm(h, train), 0.1)
        if i < len(self.widths) - 1:
          h = self.layer(
            conv.Conv(
              width, (4, 4), strides=(2, 2), use_bias=not self.norm, kernel_init=self._init("conv"), dtype=self.dtype
            ),
            h,
            update_stats,
          )
          h = nn.leaky_relu(self._norm(h, train), 0.1)
      features_BxF = h.reshape(h.shape[0], -1)
    elif self.arch == "sngan_resnet":
      for i, width in enumerate(self.widths):
        h = DiscriminatorBlock(
          width=width, down=i < 2, first=i == 0, spectral_norm=self.spectral_norm, dtype=self.dtype
        )(h, update_stats)
      features_BxF = jnp.sum(nn.relu(h), axis=(1, 2))  # global sum pooling
    else:
      raise errors.ConfigError(f"unknown discriminator architecture {self.arch!r}")

    logits_B = self.layer(nn.Dense(1, kernel_init=self._init("dense"), dtype=self.dtype), features_BxF, update_stats)[
      :, 0
    ]
    if self.num_classes is not None:
      # Projection discriminator: logit += <embed(y), features>.
      embed_BxF = self.layer(nn.Embed(self.num_classes, features_BxF.shape[-1], name="projection"), y_B, update_stats)
      logits_B = logits_B + jnp.sum(embed_BxF.astype(self.dtype) * features_BxF, axis=-1)
    return logits_B.astype(jnp.promote_types(self.dtype, jnp.float32))  # f32 logits from bf16

  def _dcgan_mnist(self, x, y_B, train, update_stats):
    """DCGAN-tensorflow's MNIST discriminator (model.py, the y_dim branch): [x, y maps] -> 5x5/2
    conv, C + K filters, LeakyReLU(0.2) -> [., y maps] -> 5x5/2 conv, df_dim + K filters, BN,
    LeakyReLU -> flatten, [., y] -> dense 1024, BN, LeakyReLU -> [., y] -> dense logit."""
    df_dim, dense_width = self.widths
    K = self.num_classes
    B, H, W, C = x.shape
    k = (self.kernel_size, self.kernel_size)
    onehot = jax.nn.one_hot(y_B, K, dtype=self.dtype)
    lrelu = lambda t: nn.leaky_relu(t, 0.2)
    layer = lambda module, t: self.layer(module, t, update_stats)
    h = jnp.concatenate([x, _one_hot_maps(y_B, K, H, W, self.dtype)], -1)
    h = lrelu(
      layer(conv.Conv(C + K, k, strides=(2, 2), padding="SAME", kernel_init=self._init("conv"), dtype=self.dtype), h)
    )
    h = jnp.concatenate([h, _one_hot_maps(y_B, K, h.shape[1], h.shape[2], self.dtype)], -1)
    h = layer(
      conv.Conv(
        df_dim + K,
        k,
        strides=(2, 2),
        padding="SAME",
        use_bias=not self.norm,
        kernel_init=self._init("conv"),
        dtype=self.dtype,
      ),
      h,
    )
    h = lrelu(self._norm(h, train)).reshape(B, -1)
    h = jnp.concatenate([h, onehot], -1)
    h = lrelu(
      self._norm(
        layer(nn.Dense(dense_width, use_bias=not self.norm, kernel_init=self._init("dense"), dtype=self.dtype), h),
        train,
      )
    )
    h = jnp.concatenate([h, onehot], -1)
    logits_B = layer(nn.Dense(1, kernel_init=self._init("dense"), dtype=self.dtype), h)[:, 0]
    return logits_B.astype(jnp.promote_types(self.dtype, jnp.float32))


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
