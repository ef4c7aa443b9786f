"""experiments/dcgan_celeba64.py: DCGAN-tensorflow's 64x64 networks over a folder of face photos."""

import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import genjax.data as gd
from genjax import families
from genjax.config import ConfigError, load_config_file, validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "experiments", "dcgan_celeba64.py")


def test_networks_are_the_reference_sizes():
  exp = validate(load_config_file(CONFIG))
  assert exp.train.steps == 79_141 and exp.train.batch_size == 64
  info = gd.DataInfo("folder", "image", (64, 64, 3))
  state = jax.eval_shape(families.build(exp, info).init, jax.random.PRNGKey(0))
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  # Counted by hand from DCGAN-tensorflow's model.py (gf_dim = df_dim = 64, 5x5 kernels; layers
  # followed by BatchNorm have no bias; BN has a scale and an offset per channel).
  g = 100 * 4 * 4 * 512 + 25 * (512 * 256 + 256 * 128 + 128 * 64 + 64 * 3) + 3 + 2 * (512 + 256 + 128 + 64)
  d = 25 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 512) + 64 + 2 * (128 + 256 + 512) + (4 * 4 * 512 + 1)
  assert count(state.params["g"]) == g and count(state.params["d"]) == d


def test_reads_a_folder_of_celeba_sized_photos_with_the_108_crop(tmp_path):
  exp = load_config_file(CONFIG)
  with pytest.raises(ConfigError, match="set --config.data.path"):
    gd.load(exp.data, exp.data.train_split)
  rng = np.random.default_rng(0)
  for k in range(3):
    photo = np.full((218, 178, 3), 30, np.uint8)
    photo[55:163, 35:143] = rng.integers(100, 250, size=3)  # the centered 108x108 square: one colour
    Image.fromarray(photo).save(tmp_path / f"{k:06d}.jpg", quality=95)
  data = dataclasses.replace(exp.data, path=str(tmp_path))
  train, evaluation = gd.load(data, data.train_split), gd.load(data, data.eval_split)
  assert train.info.shape == (64, 64, 3) and train.num_examples == evaluation.num_examples == 3
  images = train.source.get(np.arange(3))[0].astype(np.float64)
  assert (images.reshape(3, -1, 3).std(1) < 3).all()  # only the square, no background border


def test_a_missing_folder_stops_the_run_with_one_paragraph(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "genjax.train",
      "--config",
      CONFIG,
      "--workdir",
      str(tmp_path / "run"),
      f"--config.data.path={tmp_path / 'no_celeba'}",
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=300,
  )
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert f"data.path='{tmp_path / 'no_celeba'}' does not exist" in " ".join(result.stderr.split())
