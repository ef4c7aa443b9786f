"""genjax.threefry: the unrolled Threefry lowering for XLA:CPU is Threefry-2x32-20 (the
Random123 known-answer vectors) and gives every jax.random draw the bits of JAX's own lowering."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import threefry

# Random123's known-answer test vectors for threefry2x32_20 (kat_vectors in the Random123
# distribution, also in JAX's random tests): key, counter, result.
KAT = [
  ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
  ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
  ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]

# Draws whose bits come from the threefry2x32 primitive, printed as JSON by a child process.
_DRAWS = """
import json, sys, jax, jax.numpy as jnp, numpy as np
if sys.argv[1] == "unrolled":
  from genjax import threefry
  assert threefry.use_unrolled_lowering()
k = jax.random.key(1234)
draw = jax.jit(lambda k: (
  jax.random.bits(k, (3, 5, 7), jnp.uint32),
  jax.random.bits(jax.random.fold_in(k, 9), (1001,), jnp.uint8),
  jax.random.normal(jax.random.split(k, 3)[2], (17, 4)),
  jax.random.bernoulli(k, 0.9, (64, 3)),
  jax.random.key_data(jax.random.split(k, 5)),
))
lowered = jax.jit(lambda k: jax.random.bits(k, (8,))).lower(k).as_text()
out = [np.asarray(a).astype(np.float64).ravel().tolist() for a in draw(k)]
print(json.dumps({"draws": out, "rolled": "while" in lowered}))
"""


def _draws(mode):
  env = dict(os.environ, GENJAX_XLA_CPU_TUNING="off")
  run = subprocess.run([sys.executable, "-c", _DRAWS, mode], env=env, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_unrolled_hash_gives_random123s_known_answers():
  assert threefry.use_unrolled_lowering() and threefry.use_unrolled_lowering()  # idempotent
  from jax.extend.random import threefry_2x32

  # a new jitted function: compiled after the registration, so through the unrolled lowering
  hash_pair = jax.jit(lambda k, c: threefry_2x32(k, c))
  assert "while" not in hash_pair.lower(np.zeros(2, np.uint32), np.zeros(2, np.uint32)).as_text()
  for key, count, want in KAT:
    got = hash_pair(np.array(key, np.uint32), np.array(count, np.uint32))
    assert [int(v) for v in got] == list(want)
  # the function itself, on arrays of counters (the form the lowering takes)
  k1, k2 = np.uint32(KAT[2][0][0]), np.uint32(KAT[2][0][1])
  x1 = jnp.array([KAT[2][1][0], 0], jnp.uint32)
  x2 = jnp.array([KAT[2][1][1], 0], jnp.uint32)
  y1, y2 = jax.jit(threefry.threefry2x32)(k1, k2, x1, x2)
  assert (int(y1[0]), int(y2[0])) == KAT[2][2]


@pytest.mark.slow
def test_every_draw_keeps_the_bits_of_jaxs_own_lowering():
  rolled, unrolled = _draws("jax"), _draws("unrolled")
  assert rolled["rolled"] and not unrolled["rolled"]  # each process lowered the way it claims
  assert unrolled["draws"] == rolled["draws"]
