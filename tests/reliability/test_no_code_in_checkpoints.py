"""Loading a checkpoint never executes code: no file of a checkpoint is a pickle, and restoring
works with every unpickling entry point of Python and NumPy disabled."""

import os
import pickle
import pickletools

import jax
import numpy as np

from genjax.trainer import loop
from genjax.trainer import workdir as workdir_lib
from tests.trainer.helpers import small_experiment


def _looks_like_pickle(data: bytes) -> bool:
  """Protocol 2+ pickles open with PROTO (0x80, version) and parse as a stream of opcodes ending in STOP."""
  if len(data) < 3 or data[0] != 0x80 or data[1] > pickle.HIGHEST_PROTOCOL:
    return False
  try:
    ops = list(pickletools.genops(data))
  except Exception:  # noqa: BLE001 - not a valid opcode stream
    return False
  return bool(ops) and ops[-1][0].name == "STOP"


def test_detector_finds_pickles():
  assert _looks_like_pickle(pickle.dumps({"a": np.zeros(3)}))
  assert not _looks_like_pickle(b'{"json": true}') and not _looks_like_pickle(np.zeros(4).tobytes())


def test_checkpoints_hold_no_pickle_and_restore_without_unpickling(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  loop.train(small_experiment(steps=4, checkpoint_every=4, eval_every=4), workdir)
  scanned = 0
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints")):
    for name in files:
      assert not name.endswith((".pkl", ".pickle", ".npy", ".npz")), name
      with open(os.path.join(root, name), "rb") as f:
        assert not _looks_like_pickle(f.read()), os.path.join(root, name)
      scanned += 1
  assert scanned >= 3

  def refuse(*args, **kwargs):
    raise AssertionError("a checkpoint load tried to unpickle")

  class NoUnpickler:
    def __init__(self, *args, **kwargs):
      refuse()

  for module in (pickle, __import__("_pickle")):
    monkeypatch.setattr(module, "load", refuse)
    monkeypatch.setattr(module, "loads", refuse)
    monkeypatch.setattr(module, "Unpickler", NoUnpickler)
  real_np_load = np.load
  monkeypatch.setattr(
    np, "load", lambda *a, allow_pickle=False, **k: refuse() if allow_pickle else real_np_load(*a, **k)
  )
  _, _, state, _ = workdir_lib.restore(workdir)
  assert int(state.step) == 4
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state.params)))
