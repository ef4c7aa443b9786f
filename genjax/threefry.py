"""JAX's random numbers on XLA:CPU without the rolled loop: the same bits, several times faster.

Every `jax.random` draw with JAX's default key (threefry2x32) ends in the `threefry2x32`
primitive. On CPU, JAX lowers it as a `fori_loop` over the hash's five 4-round groups (smaller
programs, quicker to compile); XLA:CPU then runs each group as its own pass over the whole array,
reading and writing the loop state from memory every time. On GPU JAX writes the twenty rounds out
in full, and XLA fuses them into one pass. For 802,816 32-bit words (the dropout mask of a
32x28x28x32 activation) on one core of the 2-core development CPU: 6.7 ms with the loop, 0.97 ms
unrolled (experiments/RESULTS.md, "fourth session"); the DDPM U-Net's train step draws ~4M such
words for its eleven dropout masks.

`use_unrolled_lowering()` registers the unrolled form as the CPU lowering of JAX's primitive. The
function is Threefry-2x32 with 20 rounds (Salmon et al. 2011, "Parallel random numbers: as easy as
1, 2, 3"; the rotation constants and key schedule of its Random123 reference), i.e. the algorithm
JAX's loop computes, so every draw keeps its bits (tests/test_threefry.py checks the
Random123 known-answer vectors and bit equality with JAX's own lowering in a separate process).
genjax's commands register it together with their XLA:CPU settings (genjax.cli.apply_cpu_tuning;
GENJAX_XLA_CPU_TUNING=off keeps JAX's lowering), on the jaxlibs measured with it
(genjax.cli.UNROLLED_THREEFRY_JAXLIBS): with jax 0.12.0.1, XLA compiled a small GPT train step with
dropout for over 400 s with this lowering, 15 s without. Code that imports genjax's modules into
its own programs can call it once, before compiling.
"""

import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)  # the key schedule's constant (Threefish's C240 for 32-bit words)
_registered = False


def _rotl(v, r: int):
  import jax

  return jax.lax.shift_left(v, np.uint32(r)) | jax.lax.shift_right_logical(v, np.uint32(32 - r))


def threefry2x32(k1, k2, x1, x2):
  """Threefry-2x32-20 of the counters (x1, x2) under the key (k1, k2), all uint32 arrays of one
  shape (the key words may be scalars): twenty rounds written out, the key injected after every
  fourth. Returns the pair of hashed words."""
  keys = (k1, k2, k1 ^ k2 ^ _PARITY)
  x1, x2 = x1 + keys[0], x2 + keys[1]
  for group in range(5):
    for r in _ROTATIONS[group % 2]:
      x1 = x1 + x2
      x2 = _rotl(x2, r) ^ x1
    x1 = x1 + keys[(group + 1) % 3]
    x2 = x2 + keys[(group + 2) % 3] + np.uint32(group + 1)
  return x1, x2


def use_unrolled_lowering() -> bool:
  """Makes XLA:CPU programs compiled from now on hash with the unrolled Threefry (the same bits as
  JAX's own CPU lowering). Idempotent; False when this JAX has no public threefry primitive to
  lower (nothing is changed then)."""
  global _registered
  if _registered:
    return True
  try:
    from jax.extend.random import threefry2x32_p
    from jax.interpreters import mlir
  except ImportError:
    return False
  rule = mlir.lower_fun(lambda k1, k2, x1, x2: list(threefry2x32(k1, k2, x1, x2)), multiple_results=True)
  mlir.register_lowering(threefry2x32_p, rule, platform="cpu")
  _registered = True
  return True
