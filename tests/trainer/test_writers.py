"""What a person sees besides the numbers: labelled sample grids and the loss-curve picture."""

import json

import numpy as np
import pytest

from genjax.families import base
from genjax.families.gan import layouts as gan_layouts
from genjax.trainer import writers


def test_a_labelled_grid_is_the_plain_grid_with_labels_in_its_margins():
  images = np.random.default_rng(0).uniform(-1, 1, (20, 8, 8, 1)).astype(np.float32)
  plain = np.asarray(writers.image_grid(images, ncols=10))
  layout = base.Layout(ncols=10, rows=("class 0", "class 1"), cols=tuple(str(k) for k in range(10)), caption="grid")
  labelled = np.asarray(writers.image_grid(images, layout=layout))
  top, left = labelled.shape[0] - plain.shape[0], labelled.shape[1] - plain.shape[1]
  assert top > 0 and left > 0
  np.testing.assert_array_equal(labelled[top:, left:], plain)  # the images untouched
  assert labelled[:top].min() < 128 and labelled[top:, :left].min() < 128  # ink in both margins
  # the row labels sit beside their rows: ink in the left margin at both rows' heights
  row = plain.shape[0] // 2
  assert labelled[top : top + row, :left].min() < 128 and labelled[top + row :, :left].min() < 128
  # the layout's columns decide the shape: 10 per row
  assert np.asarray(writers.image_grid(images, layout=base.Layout(ncols=10))).shape == plain.shape


def test_gan_layouts_label_what_varies():
  class Model:
    num_classes = 10

  out = gan_layouts(Model(), 64)
  assert out["samples"].ncols == 10 and out["samples"].cols == tuple("0123456789")
  assert out["class_rows"].rows == tuple("0123456789") and out["class_rows"].ncols == 10
  assert out["interpolation"].cols[0] == "0.00" and out["interpolation"].cols[-1] == "1.00"
  Model.num_classes = None
  out = gan_layouts(Model(), 64)
  assert set(out) == {"interpolation"} and out["interpolation"].rows == ()


def test_loss_series_picks_the_losses_of_train_and_eval(tmp_path):
  records = [
    {"step": 1, "loss": 3.0, "kl": 1.0, "steps_per_sec": 10.0},
    {"step": 2, "loss": 2.0, "kl": 1.0},
    {"step": 2, "eval_loss": 2.5, "eval_nll_k50": 90.0, "eval_accuracy": 0.5},
    {"step": 3, "d_loss": 1.2, "g_loss": 0.8, "loss": float("nan")},
  ]
  series = writers.loss_series(records)
  assert series == {
    "loss": ([1, 2], [3.0, 2.0]),
    "eval_loss": ([2], [2.5]),
    "eval_nll_k50": ([2], [90.0]),
    "d_loss": ([3], [1.2]),
    "g_loss": ([3], [0.8]),
  }
  pytest.importorskip("matplotlib", reason="the loss-curve picture needs matplotlib (requirements.txt)")
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  path = writers.save_loss_curve(str(tmp_path), "run")
  from PIL import Image

  picture = Image.open(path)
  # one panel per quantity: loss, nll_k50, d_loss, g_loss, side by side
  assert picture.width == 4 * 450 and picture.height == 320
