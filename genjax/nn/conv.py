"""Convolutions as matrix multiplications, for the CPU.

XLA:CPU runs some convolution shapes far below its matmul rate: on a 2-core machine, DCGAN's
5x5 stride-2 layers at 2x2 to 8x8 resolution with 128-512 channels took 0.2-1.5 s a batch
through `lax.conv_general_dilated` (forward or backward), where the same FLOPs as one matrix
product take 10-30 ms. Stride-2 transposed convolutions (input dilation) are hit hardest, and
so is the backward pass of every strided convolution, which is one.

`conv_general_dilated` here has the signature of `lax.conv_general_dilated` and computes the
same function for 2-D NHWC/HWIO convolutions:

  - a strided convolution is im2col: the k*k shifted (and strided) views of the padded input,
    concatenated along channels, times the kernel reshaped to (k*k*C_in, C_out);
  - a convolution with input dilation s (a transposed convolution) is split into its s*s
    output phases (sub-pixel convolution, Shi et al. 2016): the output pixels of phase
    (r_h, r_w) see real (not dilated-in zero) inputs only through the taps
    kernel[t0_h::s, t0_w::s], so each phase is an im2col product of the undilated input with
    those taps, and depth-to-space interleaves the phases. No multiply touches an inserted
    zero, so XLA's cost analysis counts the layer's true FLOPs.

Both are exact re-arrangements (the sums differ only in floating-point order), their gradients
are pads, slices and matrix products, and the parameters keep the shapes and names of
`nn.Conv` / `nn.ConvTranspose`. Anything else (feature groups, kernel dilation, other ranks or
layouts) goes to `lax.conv_general_dilated` unchanged.

`Conv` and `ConvTranspose` below are `flax.linen.Conv` with this function plugged in when the
default backend is the CPU (`impl="auto"`); on GPU and TPU they are plain `lax` convolutions,
where cuDNN and the TPU convolution units are the fast path.
"""

from typing import Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from genjax import errors

_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def _is_nhwc(dimension_numbers, ndim: int) -> bool:
  if ndim != 4 or dimension_numbers is None:
    return False
  try:
    dn = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), dimension_numbers)
  except (TypeError, ValueError):
    return False
  return dn == _NHWC


def _patches_matmul(x_BxHxWxC, w_KhxKwxCxO, strides, pads, precision, preferred_element_type):
  """Valid strided correlation of lax.pad(x, pads) with w, as one matrix product."""
  kh, kw, c, o = w_KhxKwxCxO.shape
  zero = jnp.zeros((), x_BxHxWxC.dtype)
  xp = lax.pad(x_BxHxWxC, zero, ((0, 0, 0), (pads[0][0], pads[0][1], 0), (pads[1][0], pads[1][1], 0), (0, 0, 0)))
  sh, sw = strides
  ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
  if kh == kw == 1 and sh == sw == 1:
    cols = xp[:, :ho, :wo]
  else:
    cols = jnp.concatenate(
      [
        lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
      ],
      axis=-1,
    )
  return jnp.einsum(
    "bhwk,ko->bhwo",
    cols,
    w_KhxKwxCxO.reshape(kh * kw * c, o),
    precision=precision,
    preferred_element_type=preferred_element_type,
  )


def _phase(k: int, s: int, pad_lo: int, r: int, n: int, q: int):
  """One spatial dimension of a stride-1 correlation, padded by pad_lo below, of the input
  (length n) dilated by s. Output o = s*i + r (i < q) sees real inputs only through the taps
  t = t0, t0 + s, ... (those with r + t - pad_lo a multiple of s), and tap t0 + s*a reads
  x[i + first + a]. Returns t0 and the padding (possibly negative: a crop) of the undilated x
  that makes this a valid correlation with kernel[t0::s]."""
  t0 = (pad_lo - r) % s
  first = (r + t0 - pad_lo) // s
  taps = len(range(t0, k, s))
  return t0, (-first, q - 1 + first + taps - n)


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
):
  """`lax.conv_general_dilated`, computed with matrix products for 2-D NHWC/HWIO (see module doc)."""
  lhs_dilation = tuple(lhs_dilation or (1, 1))
  rhs_dilation = tuple(rhs_dilation or (1, 1))
  window_strides = tuple(window_strides)
  supported = (
    _is_nhwc(dimension_numbers, lhs.ndim)
    and feature_group_count == 1
    and batch_group_count == 1
    and rhs_dilation == (1, 1)
    and (lhs_dilation == (1, 1) or window_strides == (1, 1))
  )
  if not supported:
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      batch_group_count,
      precision,
      preferred_element_type,
    )
  kh, kw = rhs.shape[:2]
  if isinstance(padding, str):
    dilated = [(n - 1) * d + 1 for n, d in zip(lhs.shape[1:3], lhs_dilation)]
    padding = lax.padtype_to_pads(dilated, (kh, kw), window_strides, padding)
  pads = tuple(tuple(int(p) for p in pair) for pair in padding)
  if lhs_dilation == (1, 1):
    return _patches_matmul(lhs, rhs, window_strides, pads, precision, preferred_element_type)
  return _dilated_by_phases(lhs, rhs, lhs_dilation, pads, precision, preferred_element_type)


def _dilated_by_phases(lhs, rhs, lhs_dilation, pads, precision, preferred_element_type):
  """Input dilation: output phase (r_h, r_w) is a stride-1 correlation of the undilated input
  with the taps kernel[t0_h::s_h, t0_w::s_w]; the phases are then interleaved (depth-to-space)."""
  kh, kw, _, cout = rhs.shape
  b, n_h, n_w, _ = lhs.shape
  s_h, s_w = lhs_dilation
  m_h = (n_h - 1) * s_h + 1 + pads[0][0] + pads[0][1] - kh + 1
  m_w = (n_w - 1) * s_w + 1 + pads[1][0] + pads[1][1] - kw + 1
  q_h, q_w = -(-m_h // s_h), -(-m_w // s_w)
  rows = []
  for r_h in range(s_h):
    t_h, pad_h = _phase(kh, s_h, pads[0][0], r_h, n_h, q_h)
    phases = []
    for r_w in range(s_w):
      t_w, pad_w = _phase(kw, s_w, pads[1][0], r_w, n_w, q_w)
      taps = rhs[t_h::s_h, t_w::s_w]
      if taps.size == 0:  # a kernel smaller than the stride leaves some phases without taps
        phases.append(jnp.zeros((b, q_h, q_w, cout), preferred_element_type or jnp.result_type(lhs, rhs)))
      else:
        phases.append(_patches_matmul(lhs, taps, (1, 1), (pad_h, pad_w), precision, preferred_element_type))
    rows.append(jnp.stack(phases, axis=3))
  y_BxQhxQwxShxSwxC = jnp.stack(rows, axis=3)
  y = y_BxQhxQwxShxSwxC.transpose(0, 1, 3, 2, 4, 5).reshape(b, q_h * s_h, q_w * s_w, cout)
  return y[:, :m_h, :m_w]


def _use_matmul(impl: str, features: int) -> bool:
  """ "auto": matrix products on the CPU, except for layers with a handful of output channels
  (the RGB / grey image out of a generator), where the product is memory-bound and XLA's
  convolution measured 10-40x faster."""
  if impl not in ("auto", "matmul", "xla"):
    raise errors.ConfigError(f"conv impl must be 'auto', 'matmul' or 'xla', got {impl!r}.")
  return impl == "matmul" or (impl == "auto" and jax.default_backend() == "cpu" and features >= 8)


IntPair = Union[int, Sequence[int]]


def Conv(
  features: int, kernel_size: Sequence[int], strides: IntPair = 1, padding="SAME", impl: str = "auto", **kwargs
) -> nn.Conv:
  """`nn.Conv`, computed as a matrix product on the CPU (see the module doc)."""
  return nn.Conv(
    features,
    tuple(kernel_size),
    strides=strides,
    padding=padding,
    conv_general_dilated=conv_general_dilated if _use_matmul(impl, features) else None,
    **kwargs,
  )


def transpose_padding(kernel_size: Sequence[int], strides: Sequence[int], padding: str) -> Tuple[Tuple[int, int], ...]:
  """The explicit padding by which `lax.conv_transpose(padding=...)` pads the dilated input."""
  pads = []
  for k, s in zip(kernel_size, strides):
    if padding == "SAME":
      pad_len, pad_a = k + s - 2, (k - 1 if s > k - 1 else int(np.ceil((k + s - 2) / 2)))
    elif padding == "VALID":
      pad_len, pad_a = k + s - 2 + max(k - s, 0), k - 1
    else:
      raise errors.ConfigError(f"ConvTranspose padding must be 'SAME' or 'VALID', got {padding!r}.")
    pads.append((pad_a, pad_len - pad_a))
  return tuple(pads)


def ConvTranspose(
  features: int,
  kernel_size: Sequence[int],
  strides: Sequence[int] = (1, 1),
  padding: str = "SAME",
  impl: str = "auto",
  **kwargs,
) -> nn.Conv:
  """`nn.ConvTranspose(features, kernel_size, strides, padding)` (transpose_kernel=False): the
  same output and the same (kh, kw, C_in, C_out) kernel, written as the input-dilated
  convolution it is, so that the CPU can run it as sub-pixel matrix products."""
  kernel_size, strides = tuple(kernel_size), tuple(strides)
  return nn.Conv(
    features,
    kernel_size,
    strides=1,
    padding=transpose_padding(kernel_size, strides, padding),
    input_dilation=strides,
    conv_general_dilated=conv_general_dilated if _use_matmul(impl, features) else None,
    **kwargs,
  )
