"""EDM's non-leaky augmentation pipeline (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", appendix F.2), as pure functions: a port of NVlabs/edm's
training/augment.py (class AugmentPipe, itself from StyleGAN2-ADA's, Karras et al. 2020) that
gives the same images and labels as the reference for the same random draws.

Each example is transformed with probability p times a per-transform multiplier, in the
reference's order:

  pixel blitting   xflip, yflip, rotate_int (multiples of 90 degrees), translate_int (whole pixels,
                   reflected at the borders): exact pixel permutations;
  geometric        scale (isotropic, log2-normal), rotate_frac (uniform angle), aniso (anisotropic
                   scaling along a random axis), translate_frac (normal, in image fractions),
                   composed into one inverse matrix G_inv per example and executed once: reflect
                   padding, 2x upsampling with the sym6 wavelet low-pass filter, bilinear sampling
                   of the affine grid (zeros outside, align_corners=False), downsampling with the
                   same filter, crop;
  colour           brightness, contrast, lumaflip, hue, saturation: one 4x4 matrix per example.

Every transform also writes its parameters into a label vector (`label_dim` entries) that
conditions the network, so that it can learn the data distribution without the augmentations
leaking into its samples (sampling uses zero labels). EDM's CIFAR-10 training uses
`AugmentConfig()` (the defaults here: p = 0.12, xflip = 1e8, yflip = scale = rotate_frac = aniso
= translate_frac = 1), applied to the clean images before the noise is added; note xflip = 1e8
makes the x-flip gate pass whenever p > 0, so that half of all images are mirrored.

`draw(key, n, cfg)` draws the random numbers (uniforms, normals and integers: the same ones, in
the same order, as the reference's torch.rand / randn / randint calls, `DRAWS`), `apply(images,
draws, cfg)` is deterministic, and `augment = apply . draw`. Images are NHWC (the reference is
NCHW), float32 in and out.

Static shapes. The reference reflect-pads the image by a data-dependent margin: the farthest
any transformed image corner reaches beyond the image, over the whole batch, plus 6 pixels for
the filters, clamped to [0, W - 1] x [0, H - 1]; it then reads zeros outside the padded image
(the upsampling convolution's zero padding) and outside the upsampled one (grid_sample's). A
larger reflect padding is not equivalent: the sampled grid reaches 3 pixels beyond the image
corners (times the transform's scaling), the bilinear and upsampling filters 3.5 more, and the
margin adds only 6, so under a zoom-out or a rotation the reference reads zeros, or values the
upsampling blurred against zeros, where a wider padding has image content; these reach the kept
pixels near the corners through the downsampling filter's tails. Measured against the reference:
an unmasked static padding of W - 1 / H - 1 differs by <= 1e-5 on random batches at EDM's
settings (the batch-wide margin is large), but by 1e-2 on one image zoomed out 1.8x and stretched
(tests/families/test_edm_augment.py, "edm_extreme"). So the canvas here has the static margin
W - 1 / H - 1 on each side (the reference's upper clamp: reflections of any amount up to it are
the same index map, so the values agree wherever the reference has them) and the reference's own
margin is computed from G_inv (`reference_margin`, the batch maximum, as there) and applied as a
mask: zero outside its padded window before upsampling, and outside its upsampled window after.
The output is the reference's up to float rounding (measured: <= 1.3e-5), except where a margin
lands within rounding of an integer and the ceil may differ. The margin being a batch maximum,
an example's corners depend slightly on the rest of its batch (on the batch given to `apply`:
under data parallelism the reference's batch is one device's), as in the reference.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors

# Low-pass decomposition filter of the "sym6" wavelet (Daubechies' least asymmetric wavelet with 6
# vanishing moments), the reference's resampling filter.
SYM6 = (
  0.015404109327027373,
  0.0034907120842174702,
  -0.11799011114819057,
  -0.048311742585633,
  0.4910559419267466,
  0.787641141030194,
  0.3379294217276218,
  -0.07263752278646252,
  -0.021060292512300564,
  0.04472490177066578,
  0.0017677118642428036,
  -0.007800708325034148,
)
FILTER_PAD = len(SYM6) // 4  # the reference's Hz_pad: the output grid extends this far beyond the image

# The random numbers each transform draws, in the reference's order: (field, kind, width) with kind
# "uniform" (torch.rand, [0, 1)), "normal" (torch.randn), "bit" (torch.randint(2)) or "quarter"
# (torch.randint(4)); width 2 draws one [B, 2] array (the reference's [2, N] tensors). The "gate"
# uniform turns the transform on where it is below multiplier * p.
DRAWS = {
  "xflip": (("bit", "bit", 1), ("gate", "uniform", 1)),
  "yflip": (("bit", "bit", 1), ("gate", "uniform", 1)),
  "rotate_int": (("quarter", "quarter", 1), ("gate", "uniform", 1)),
  "translate_int": (("u", "uniform", 2), ("gate", "uniform", 1)),
  "scale": (("z", "normal", 1), ("gate", "uniform", 1)),
  "rotate_frac": (("u", "uniform", 1), ("gate", "uniform", 1)),
  "aniso": (("z", "normal", 1), ("u", "uniform", 1), ("gate", "uniform", 1), ("rotate_gate", "uniform", 1)),
  "translate_frac": (("z", "normal", 2), ("gate", "uniform", 1)),
  "brightness": (("z", "normal", 1), ("gate", "uniform", 1)),
  "contrast": (("z", "normal", 1), ("gate", "uniform", 1)),
  "lumaflip": (("bit", "bit", 1), ("gate", "uniform", 1)),
  "hue": (("u", "uniform", 1), ("gate", "uniform", 1)),
  "saturation": (("z", "normal", 1), ("gate", "uniform", 1)),
}
TRANSFORMS = tuple(DRAWS)  # the reference's order
LABEL_WIDTH = {
  "xflip": 1,
  "yflip": 1,
  "rotate_int": 2,
  "translate_int": 2,
  "scale": 1,
  "rotate_frac": 2,
  "aniso": 2,
  "translate_frac": 2,
  "brightness": 1,
  "contrast": 1,
  "lumaflip": 1,
  "hue": 2,
  "saturation": 1,
}
GEOMETRIC = ("scale", "rotate_frac", "aniso", "translate_frac")
COLOUR = ("brightness", "contrast", "lumaflip", "hue", "saturation")

Draws = Dict[str, Dict[str, jax.Array]]
_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """AugmentPipe's settings (defaults: EDM's CIFAR-10 training, train.py's --augment=0.12 with
  `AugmentPipe(p, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)`; the
  reference class's own defaults are all transforms off and p = 1).

  p: the overall probability multiplier (0: no augmentation, zero labels);
  xflip ... saturation: per-transform probability multipliers (0: the transform is off, draws no
    random numbers and has no label entries; a transform fires where gate < multiplier * p);
  translate_int_max: range of integer translation, in image fractions;
  scale_std, aniso_std, contrast_std, saturation_std: log2 standard deviations;
  rotate_frac_max, hue_max: range of the angle (1: the full circle);
  aniso_rotate_prob: probability that the anisotropic scaling is along a rotated axis;
  translate_frac_std: standard deviation of the fractional translation, in image fractions;
  brightness_std: standard deviation of the brightness offset."""

  p: float = 0.12
  xflip: float = 1e8
  yflip: float = 1.0
  rotate_int: float = 0.0
  translate_int: float = 0.0
  translate_int_max: float = 0.125
  scale: float = 1.0
  rotate_frac: float = 1.0
  aniso: float = 1.0
  translate_frac: float = 1.0
  scale_std: float = 0.2
  rotate_frac_max: float = 1.0
  aniso_std: float = 0.2
  aniso_rotate_prob: float = 0.5
  translate_frac_std: float = 0.125
  brightness: float = 0.0
  contrast: float = 0.0
  lumaflip: float = 0.0
  hue: float = 0.0
  saturation: float = 0.0
  brightness_std: float = 0.2
  contrast_std: float = 0.5
  hue_max: float = 1.0
  saturation_std: float = 1.0


def check(cfg: AugmentConfig, prefix: str = "config.augment") -> None:
  """ConfigError naming the field for a value that cannot work."""
  if not 0 <= cfg.p <= 1:
    raise errors.ConfigError(f"{prefix}.p = {cfg.p} must be in [0, 1] (EDM's CIFAR-10 training uses 0.12).")
  for name in TRANSFORMS:
    value = getattr(cfg, name)
    if not (value >= 0 and math.isfinite(value)):
      raise errors.ConfigError(
        f"{prefix}.{name} = {value} must be a finite probability multiplier >= 0 (0 turns it off)."
      )
  ranges = ("translate_int_max", "scale_std", "rotate_frac_max", "aniso_std", "translate_frac_std")
  for name in ranges + ("brightness_std", "contrast_std", "hue_max", "saturation_std"):
    value = getattr(cfg, name)
    if not (value >= 0 and math.isfinite(value)):
      raise errors.ConfigError(f"{prefix}.{name} = {value} must be finite and >= 0.")
  if not 0 <= cfg.aniso_rotate_prob <= 1:
    raise errors.ConfigError(f"{prefix}.aniso_rotate_prob = {cfg.aniso_rotate_prob} must be in [0, 1].")


def enabled(cfg: AugmentConfig) -> tuple:
  """The transforms with a nonzero multiplier, in the reference's order."""
  return tuple(name for name in TRANSFORMS if getattr(cfg, name) > 0)


def label_dim(cfg: AugmentConfig) -> int:
  """Length of the label vector (9 for EDM's CIFAR-10 setting, `AugmentConfig()`)."""
  return sum(LABEL_WIDTH[name] for name in enabled(cfg))


def _check_images(shape, cfg: AugmentConfig) -> None:
  if len(shape) != 4:
    raise errors.ConfigError(f"augment expects images [B, H, W, C], got shape {tuple(shape)}.")
  _, h, w, c = shape
  names = enabled(cfg)
  if (set(names) & set(GEOMETRIC + ("translate_int",))) and min(h, w) < 2:
    raise errors.ConfigError(f"Geometric augmentation needs images of at least 2x2 pixels, got {h}x{w}.")
  if "rotate_int" in names and h != w:
    raise errors.ConfigError(f"rotate_int needs square images (it transposes them), got {h}x{w}.")
  if set(names) & set(COLOUR) and c not in (1, 3):
    raise errors.ConfigError(f"The colour transforms need RGB (3 channels) or L (1 channel) images, got {c}.")


# ----------------------------------------------------------------------------------------------
# Random draws
# ----------------------------------------------------------------------------------------------


def _sample(key, kind: str, n: int, width: int):
  shape = (n,) if width == 1 else (n, width)
  if kind == "uniform":
    return jax.random.uniform(key, shape, jnp.float32)
  if kind == "normal":
    return jax.random.normal(key, shape, jnp.float32)
  return jax.random.randint(key, shape, 0, 2 if kind == "bit" else 4, jnp.int32)


def draw(key, n: int, cfg: AugmentConfig) -> Draws:
  """The random numbers of n examples: {transform: {field: [n] or [n, 2]}} for the enabled
  transforms (`DRAWS` lists the fields: uniforms in [0, 1), standard normals, int32 bits or
  quarter turns), what the reference draws with torch.rand / randn / randint."""
  names = enabled(cfg)
  out = {}
  for name, key_t in zip(names, jax.random.split(key, max(len(names), 1))):
    fields = DRAWS[name]
    keys = jax.random.split(key_t, len(fields))
    out[name] = {field: _sample(k, kind, n, width) for (field, kind, width), k in zip(fields, keys)}
  return out


# ----------------------------------------------------------------------------------------------
# Transformation matrices ([B, 3, 3] for 2-d points, [B, 4, 4] for colours; the reference's
# matrix() helpers)
# ----------------------------------------------------------------------------------------------


def _stack(rows):
  """[B, R, K] from R rows of K entries, each a [B] array or a number."""
  shape = jnp.broadcast_shapes(*(jnp.shape(e) for row in rows for e in row))
  full = [[jnp.broadcast_to(jnp.asarray(e, jnp.float32), shape) for e in row] for row in rows]
  return jnp.stack([jnp.stack(row, -1) for row in full], -2)


def _translate2d(tx, ty):
  return _stack([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def _scale2d(sx, sy):
  return _stack([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def _rotate2d(theta):
  return _stack([[jnp.cos(theta), jnp.sin(-theta), 0], [jnp.sin(theta), jnp.cos(theta), 0], [0, 0, 1]])


def _mm(a, b):
  return jnp.matmul(a, b, precision=_HI)


def _gated(draws: Draws, name: str, value, cfg: AugmentConfig):
  """value where the transform fires (its gate uniform < multiplier * p), else 0."""
  gate = draws[name]["gate"]
  on = gate < getattr(cfg, name) * cfg.p
  if value.ndim == 2:
    on = on[:, None]
  return jnp.where(on, value, jnp.zeros_like(value))


def geometric_matrices(draws: Draws, cfg: AugmentConfig, height: int, width: int):
  """(G_inv f32[B, 3, 3], labels): the inverse transformation of every example, mapping output
  pixel coordinates to input ones, both centred on the image centre, and the geometric transforms'
  label entries (a list of [B] arrays). G_inv is the identity where no geometric transform fires."""
  n = draws[next(name for name in GEOMETRIC if getattr(cfg, name) > 0)]["gate"].shape[0]
  g = jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), (n, 3, 3))
  labels = []
  if cfg.scale > 0:
    w = _gated(draws, "scale", draws["scale"]["z"], cfg)
    s = jnp.exp2(w * cfg.scale_std)
    g = _mm(g, _scale2d(1 / s, 1 / s))
    labels += [w]
  if cfg.rotate_frac > 0:
    w = _gated(draws, "rotate_frac", (draws["rotate_frac"]["u"] * 2 - 1) * (np.pi * cfg.rotate_frac_max), cfg)
    g = _mm(g, _rotate2d(w))
    labels += [jnp.cos(w) - 1, jnp.sin(w)]
  if cfg.aniso > 0:
    d = draws["aniso"]
    w = _gated(draws, "aniso", d["z"], cfg)
    r = (d["u"] * 2 - 1) * np.pi
    r = jnp.where(d["rotate_gate"] < cfg.aniso_rotate_prob, r, jnp.zeros_like(r))
    s = jnp.exp2(w * cfg.aniso_std)
    g = _mm(_mm(_mm(g, _rotate2d(-r)), _scale2d(1 / s, s)), _rotate2d(r))
    labels += [w * jnp.cos(r), w * jnp.sin(r)]
  if cfg.translate_frac > 0:
    w = _gated(draws, "translate_frac", draws["translate_frac"]["z"], cfg)
    g = _mm(
      g, _translate2d(-(w[:, 0] * (width * cfg.translate_frac_std)), -(w[:, 1] * (height * cfg.translate_frac_std)))
    )
    labels += [w[:, 0], w[:, 1]]
  return g, labels


def reference_margin(g_inv_Bx3x3, height: int, width: int):
  """int32[4], (x0, y0, x1, y1): the reflect padding the reference gives this batch (left, top,
  right, bottom): the farthest any transformed image corner reaches beyond the image, over the
  whole batch, plus 2 FILTER_PAD pixels, clamped to [0, W - 1] / [0, H - 1] and rounded up."""
  cx, cy = (width - 1) / 2, (height - 1) / 2
  corners_3x4 = jnp.asarray([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]], jnp.float32)
  cp_Bx2x4 = _mm(g_inv_Bx3x3, corners_3x4)[:, :2, :]
  reach_4 = jnp.max(jnp.concatenate([-cp_Bx2x4, cp_Bx2x4], axis=1), axis=(0, 2))
  reach_4 = reach_4 + jnp.asarray([FILTER_PAD * 2 - cx, FILTER_PAD * 2 - cy] * 2, jnp.float32)
  reach_4 = jnp.clip(reach_4, 0.0, jnp.asarray([width - 1, height - 1] * 2, jnp.float32))
  return jnp.ceil(reach_4).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------
# Executing the geometric transformation
# ----------------------------------------------------------------------------------------------


def _filter_1d(x_BxHxWxC, taps, axis: int, up: bool):
  """Depthwise 1-d convolution along axis 1 (rows) or 2 (columns): the reference's 2x upsampling
  (zeros interleaved, the last one dropped, convolution with the filter, zero padding 6) or 2x
  downsampling (correlation with the filter, stride 2, zero padding 5), without its crop."""
  c = x_BxHxWxC.shape[-1]
  k = len(taps)
  kernel = np.asarray(taps[::-1] if up else taps, np.float32)
  shape = (k, 1, 1, c) if axis == 1 else (1, k, 1, c)
  kernel_HWIO = jnp.asarray(np.broadcast_to(kernel.reshape(shape[:2] + (1, 1)), shape))
  pad = ((k + 1) // 2, (k + 1) // 2) if up else ((k - 1) // 2, (k - 1) // 2)
  padding = (pad, (0, 0)) if axis == 1 else ((0, 0), pad)
  dilation = (2, 1) if axis == 1 else (1, 2)
  return jax.lax.conv_general_dilated(
    x_BxHxWxC,
    kernel_HWIO,
    window_strides=(1, 1) if up else dilation,
    padding=padding,
    lhs_dilation=dilation if up else (1, 1),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=c,
    precision=_HI,
  )


def _window(size: int, start, stop):
  """f32[size]: 1 on [start, stop), else 0."""
  i = jnp.arange(size)
  return ((i >= start) & (i < stop)).astype(jnp.float32)


def _bilinear(img_HxWxC, uy_PxQ, ux_PxQ):
  """grid_sample's bilinear interpolation at pixel coordinates (pixel centres at integers), zeros
  outside the image."""
  h, w, _ = img_HxWxC.shape
  y0, x0 = jnp.floor(uy_PxQ), jnp.floor(ux_PxQ)
  fy, fx = uy_PxQ - y0, ux_PxQ - x0
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  out = 0.0
  for dy, wy in ((0, 1 - fy), (1, fy)):
    for dx, wx in ((0, 1 - fx), (1, fx)):
      yi, xi = y0 + dy, x0 + dx
      inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
      value = img_HxWxC[jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)]
      out = out + value * jnp.where(inside, wx * wy, 0.0)[..., None]
  return out


def warp(images_BxHxWxC, g_inv_Bx3x3, margin_4=None):
  """The reference's execution of G_inv: f32[B, H, W, C]. margin_4 (x0, y0, x1, y1) is the
  reflect padding whose window is kept (the rest is zeroed, as outside the reference's padded
  image); None: `reference_margin` of this batch, which reproduces the reference."""
  b, h, w, c = images_BxHxWxC.shape
  if margin_4 is None:
    margin_4 = reference_margin(g_inv_Bx3x3, h, w)
  mx0, my0, mx1, my1 = (margin_4[i] for i in range(4))
  sx, sy = w - 1, h - 1  # static canvas margins: the largest the reference uses
  x = jnp.pad(images_BxHxWxC, ((0, 0), (sy, sy), (sx, sx), (0, 0)), mode="reflect")
  ph, pw = h + 2 * sy, w + 2 * sx
  rows = _window(ph, sy - my0, sy + h + my1)
  cols = _window(pw, sx - mx0, sx + w + mx1)
  x = x * rows[None, :, None, None] * cols[None, None, :, None]
  # 2x upsampling, columns then rows, as the reference; zero where its upsampled image ends.
  x = _filter_1d(_filter_1d(x, SYM6, axis=2, up=True), SYM6, axis=1, up=True)  # [B, 2 ph, 2 pw, C]
  rows = _window(2 * ph, 2 * (sy - my0), 2 * (sy + h + my1))
  cols = _window(2 * pw, 2 * (sx - mx0), 2 * (sx + w + mx1))
  x = x * rows[None, :, None, None] * cols[None, None, :, None]
  # The output grid: (H + 2 FILTER_PAD) x (W + 2 FILTER_PAD) pixels at twice the resolution; its
  # pixel j sits at j / 2 - FILTER_PAD in the image's pixel coordinates. G_inv maps it (centred) to
  # the input, whose pixel position p is the upsampled canvas's 2 (p + static margin).
  cx, cy = (w - 1) / 2, (h - 1) / 2
  px_Q = jnp.arange(2 * (w + 2 * FILTER_PAD), dtype=jnp.float32) / 2 - FILTER_PAD - cx
  py_P = jnp.arange(2 * (h + 2 * FILTER_PAD), dtype=jnp.float32) / 2 - FILTER_PAD - cy
  g = g_inv_Bx3x3[:, :, :, None, None]
  qx_BxPxQ = g[:, 0, 0] * px_Q[None, None, :] + g[:, 0, 1] * py_P[None, :, None] + g[:, 0, 2]
  qy_BxPxQ = g[:, 1, 0] * px_Q[None, None, :] + g[:, 1, 1] * py_P[None, :, None] + g[:, 1, 2]
  ux = 2 * (qx_BxPxQ + (cx + sx))
  uy = 2 * (qy_BxPxQ + (cy + sy))
  x = jax.vmap(_bilinear)(x, uy, ux)
  # 2x downsampling, columns then rows, and the crop of the FILTER_PAD border.
  x = _filter_1d(x, SYM6, axis=2, up=False)[:, :, FILTER_PAD:-FILTER_PAD]
  x = _filter_1d(x, SYM6, axis=1, up=False)[:, FILTER_PAD:-FILTER_PAD]
  return x


# ----------------------------------------------------------------------------------------------
# Colour transformations
# ----------------------------------------------------------------------------------------------


def _colour_matrices(draws: Draws, cfg: AugmentConfig, n: int):
  """(M [B, 4, 4] acting on (r, g, b, 1), labels): the reference's colour matrix per example."""
  eye = jnp.eye(4, dtype=jnp.float32)
  m = jnp.broadcast_to(eye, (n, 4, 4))
  v = jnp.asarray(np.asarray([1, 1, 1, 0]) / np.sqrt(3), jnp.float32)
  vv = jnp.outer(v, v)
  labels = []
  if cfg.brightness > 0:
    w = _gated(draws, "brightness", draws["brightness"]["z"], cfg)
    b = w * cfg.brightness_std
    m = _mm(_stack([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]]), m)
    labels += [w]
  if cfg.contrast > 0:
    w = _gated(draws, "contrast", draws["contrast"]["z"], cfg)
    s = jnp.exp2(w * cfg.contrast_std)
    m = _mm(_stack([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]]), m)
    labels += [w]
  if cfg.lumaflip > 0:
    w = _gated(draws, "lumaflip", draws["lumaflip"]["bit"], cfg)
    m = _mm(eye - 2 * vv * w[:, None, None].astype(jnp.float32), m)
    labels += [w]
  if cfg.hue > 0:
    w = _gated(draws, "hue", (draws["hue"]["u"] * 2 - 1) * (np.pi * cfg.hue_max), cfg)
    s, c = jnp.sin(w), jnp.cos(w)
    cc = 1 - c
    vx, vy, vz = v[0], v[1], v[2]
    rot = _stack(
      [
        [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
        [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
        [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
        [0, 0, 0, 1],
      ]
    )
    m = _mm(rot, m)
    labels += [jnp.cos(w) - 1, jnp.sin(w)]
  if cfg.saturation > 0:
    w = _gated(draws, "saturation", draws["saturation"]["z"], cfg)
    m = _mm(vv + (eye - vv) * jnp.exp2(w * cfg.saturation_std)[:, None, None], m)
    labels += [w]
  return m, labels


def _recolour(x_BxHxWxC, m_Bx4x4):
  if x_BxHxWxC.shape[-1] == 3:
    return jnp.einsum("bij,bhwj->bhwi", m_Bx4x4[:, :3, :3], x_BxHxWxC, precision=_HI) + m_Bx4x4[:, None, None, :3, 3]
  row_Bx4 = jnp.mean(m_Bx4x4[:, :3, :], axis=1)
  return x_BxHxWxC * jnp.sum(row_Bx4[:, :3], -1)[:, None, None, None] + row_Bx4[:, 3, None, None, None]


# ----------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------


def apply(images_BxHxWxC, draws: Draws, cfg: AugmentConfig):
  """(augmented images f32[B, H, W, C], labels f32[B, label_dim(cfg)]): the reference's
  AugmentPipe with these random draws (see `draw`). Jit-able with cfg static.

  As in the reference, the geometric resampling runs whenever a geometric transform is enabled
  (multiplier > 0), even for examples (or at p = 0, whole batches) where none fires: there it is
  the identity up to float rounding (the sym6 filter's up- and downsampling invert each other)."""
  check(cfg)
  x = jnp.asarray(images_BxHxWxC, jnp.float32)
  _check_images(x.shape, cfg)
  b, h, w, _ = x.shape
  labels = []

  def where_B(cond_B, a, other):
    return jnp.where(cond_B[:, None, None, None], a, other)

  for name, axis in (("xflip", 2), ("yflip", 1)):
    if getattr(cfg, name) > 0:
      flip = _gated(draws, name, draws[name]["bit"], cfg)
      x = where_B(flip == 1, jnp.flip(x, axis), x)
      labels += [flip]
  if cfg.rotate_int > 0:
    q = _gated(draws, "rotate_int", draws["rotate_int"]["quarter"], cfg)
    x = where_B((q == 1) | (q == 2), jnp.flip(x, 2), x)
    x = where_B((q == 2) | (q == 3), jnp.flip(x, 1), x)
    x = where_B((q == 1) | (q == 3), jnp.swapaxes(x, 1, 2), x)
    labels += [(q == 1) | (q == 2), (q == 2) | (q == 3)]
  if cfg.translate_int > 0:
    u = _gated(draws, "translate_int", draws["translate_int"]["u"] * 2 - 1, cfg)
    tx = jnp.round(u[:, 0] * (w * cfg.translate_int_max)).astype(jnp.int32)
    ty = jnp.round(u[:, 1] * (h * cfg.translate_int_max)).astype(jnp.int32)
    # out[y, x] = in[y + ty, x - tx], reflected at the borders (the reference's index arithmetic)
    xs_BxW = w - 1 - jnp.abs(w - 1 - (jnp.arange(w)[None, :] - tx[:, None]) % (2 * w - 2))
    ys_BxH = h - 1 - jnp.abs(h - 1 - (jnp.arange(h)[None, :] + ty[:, None]) % (2 * h - 2))
    x = jax.vmap(lambda img, ys, xs: img[ys][:, xs])(x, ys_BxH, xs_BxW)
    labels += [tx / (w * cfg.translate_int_max), ty / (h * cfg.translate_int_max)]

  if any(getattr(cfg, name) > 0 for name in GEOMETRIC):
    g_inv, geometric_labels = geometric_matrices(draws, cfg, h, w)
    x = warp(x, g_inv)
    labels += geometric_labels

  if any(getattr(cfg, name) > 0 for name in COLOUR):
    m, colour_labels = _colour_matrices(draws, cfg, b)
    x = _recolour(x, m)
    labels += colour_labels

  labels = [jnp.asarray(label).astype(jnp.float32).reshape(b, -1) for label in labels]
  labels_BxL = jnp.concatenate(labels, axis=1) if labels else jnp.zeros((b, 0), jnp.float32)
  return x, labels_BxL


def augment(key, images_BxHxWxC, cfg: AugmentConfig):
  """`apply(images, draw(key, B, cfg), cfg)`: (augmented images f32[B, H, W, C], labels
  f32[B, label_dim(cfg)])."""
  return apply(images_BxHxWxC, draw(key, images_BxHxWxC.shape[0], cfg), cfg)
