"""Portable exports (genjax.data.export): numpy-only reading, byte-identical batches."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import genjax.data as gd
from genjax.config import Data
from genjax.data import export
from tests.data.test_tfds_datasets import real

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _digest(batches) -> str:
  h = hashlib.sha256()
  for batch in batches:
    for key in sorted(batch):
      h.update(key.encode() + np.ascontiguousarray(batch[key]).tobytes())
  return h.hexdigest()


def _batches(cfg: Data, split: str, eval_split: str):
  train = gd.load(cfg, split)
  evals = gd.load(cfg, eval_split)
  out = [train.batch(step, 32, seed=3) for step in (0, 1, 1874, 1875)]  # 1875 crosses into epoch 2 (MNIST)
  out += [train.batch(5, 32, seed=3, process_index=1, process_count=2)]
  out += list(evals.eval_batches(48, num_batches=3))
  return out


@pytest.mark.dataset
@pytest.mark.parametrize(
  "name,split,eval_split,options",
  [
    ("mnist", "train", "test", {}),
    ("mnist", "train", "test", {"binarize": "dynamic"}),
    ("tiny_shakespeare", "nanogpt_train", "nanogpt_val", {"block_size": 64}),
  ],
)
def test_an_export_gives_the_tfds_batches_byte_for_byte(tmp_path, name, split, eval_split, options):
  tfds_cfg = real(name, data_dir=os.environ.get("GENJAX_DATA_DIR"), **options)
  info = export.export(name, str(tmp_path), tfds_cfg)
  assert os.path.isfile(tmp_path / name / export.MARKER) and info["splits"]
  exported_cfg = Data(name=name, data_dir=str(tmp_path), **options)
  assert gd.load(exported_cfg, eval_split).info == gd.load(tfds_cfg, eval_split).info
  a, b = _batches(tfds_cfg, split, eval_split), _batches(exported_cfg, split, eval_split)
  assert _digest(a) == _digest(b)
  assert len({_digest([x]) for x in a}) == len(a)  # the batches really differ from one another


@pytest.mark.dataset
def test_an_export_is_read_without_tensorflow_datasets(tmp_path):
  """A child process where tensorflow_datasets, array_record and tensorflow cannot be imported
  reads the export and gets the same batches."""
  cfg = real("mnist", data_dir=os.environ.get("GENJAX_DATA_DIR"))
  export.export("mnist", str(tmp_path), cfg)
  expected = _digest(_batches(Data(name="mnist", data_dir=str(tmp_path)), "train", "test"))
  code = f"""
import sys
for blocked in ("tensorflow_datasets", "array_record", "tensorflow", "tensorboardX"):
  sys.modules[blocked] = None  # any import of them raises ImportError
sys.path.insert(0, {REPO!r})
from tests.data.test_export import _batches, _digest
from genjax.config import Data
print(_digest(_batches(Data(name="mnist", data_dir={str(tmp_path)!r}), "train", "test")))
"""
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == expected


def test_exports_that_do_not_fit_are_refused(tmp_path):
  folder = tmp_path / "mnist"
  folder.mkdir()
  (folder / export.MARKER).write_text(json.dumps({"format": 99, "splits": {}}))
  with pytest.raises(ValueError, match="export the dataset again"):
    gd.load(Data(name="mnist", data_dir=str(tmp_path)), "train")
  (folder / export.MARKER).write_text(
    json.dumps(
      {
        "format": export.FORMAT_VERSION,
        "name": "mnist",
        "kind": "image",
        "shape": [2, 2, 1],
        "num_classes": 2,
        "splits": {"train": 3},
      }
    )
  )
  np.savez_compressed(folder / "train.npz", images=np.zeros((3, 2, 2, 1), np.uint8), labels=np.zeros(3, np.int32))
  assert gd.load(Data(name="mnist", data_dir=str(tmp_path)), "train").num_examples == 3
  with pytest.raises(ValueError, match="TFDS split slicing"):
    gd.load(Data(name="mnist", data_dir=str(tmp_path)), "train[:50%]")
