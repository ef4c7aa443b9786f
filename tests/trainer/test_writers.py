"""What a person sees besides the numbers: labelled sample grids and the loss-curve picture."""

import json
import sys

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


def test_metrics_in_a_bucket_are_uploaded_in_batches(monkeypatch, tmp_path):
  """A bucket object cannot be appended to: each upload rewrites metrics.jsonl whole, so lines are
  held and uploaded at flush (checkpoints), every flush_every_s and at close, with the lines a
  resumed run kept; a local file gets every line at once."""
  objects, uploads = {"gs://b/run/metrics.jsonl": '{"step": 0}\n'}, []  # what a resumed run kept

  def upload(path, text):
    uploads.append(len(text))
    objects[str(path)] = text

  monkeypatch.setattr(writers.paths, "exists", lambda path: str(path) in objects)
  monkeypatch.setattr(writers.paths, "read_text", lambda path: objects[str(path)])
  monkeypatch.setattr(writers.paths, "write_atomic", upload)
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # no TensorBoard events here
  now = [0.0]
  writer = writers.MetricWriter("gs://b/run", flush_every_s=30.0, clock=lambda: now[0])
  for step in range(1, 1501):  # 150 s of logging, a checkpoint every 500 steps
    now[0] += 0.1
    writer.write(step, {"loss": 1.0 / step})
    if step % 500 == 0:
      writer.flush()
  writer.write(1500, {"eval_loss": 0.5})
  writer.close()
  records = [json.loads(line) for line in objects["gs://b/run/metrics.jsonl"].splitlines()]
  assert [r["step"] for r in records] == [*range(0, 1501), 1500] and records[-1] == {"step": 1500, "eval_loss": 0.5}
  assert len(uploads) <= 3 + 150 // 30 + 1, len(uploads)  # checkpoints, every 30 s, close; not 1,501

  monkeypatch.undo()
  local = writers.MetricWriter(str(tmp_path), clock=lambda: 0.0)
  local.write(1, {"loss": 2.0})
  assert writers.read_metrics(str(tmp_path)) == [{"step": 1, "loss": 2.0}]  # no flush needed
  local.close()
