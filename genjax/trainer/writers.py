"""What a person sees: metrics.jsonl, TensorBoard events, and sample pictures (PNG grids)."""

import io
import json
import logging
import math
import time
from typing import Mapping, Optional

import numpy as np
from PIL import Image

from genjax import errors, paths


def image_grid(
  images: np.ndarray, ncols: Optional[int] = None, pad: int = 1, min_cell: int = 64, layout=None
) -> Image.Image:
  """A PIL image tiling `images` f32[N,H,W,C] in [-1, 1] (C = 1 or 3; other C show channel 0
  .. 2). Small images are enlarged with nearest-neighbour so each cell is >= `min_cell` px.
  `layout` (genjax.families.base.Layout) sets the images per row and labels the rows, the
  columns and the grid."""
  if layout is not None:
    ncols = layout.ncols or ncols
  images = np.asarray(images, np.float32)
  if len(images) == 0:
    raise errors.ConfigError("image_grid needs at least one image.")
  if images.ndim == 3:
    images = images[..., None]
  n, h, w, c = images.shape
  if c not in (1, 3):
    images = images[..., :3] if c > 3 else np.concatenate([images, images[..., :1] * 0 - 1], -1)
    c = 3
  ncols = ncols or int(math.ceil(math.sqrt(n)))
  nrows = int(math.ceil(n / ncols))
  pixels = np.clip((images + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, ncols)
    grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = pixels[i]
  picture = Image.fromarray(grid[..., 0] if c == 1 else grid)
  scale = max(1, int(math.ceil(min_cell / max(h, w))))
  if scale > 1:
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
  if layout is not None and (layout.rows or layout.cols or layout.caption):
    picture = _labelled(picture, layout, ((h + pad) * scale, (w + pad) * scale), pad * scale)
  return picture


def _labelled(picture: Image.Image, layout, cell, pad: int) -> Image.Image:
  """`picture` on a white canvas with the layout's row labels at the left, column labels and the
  caption above (Pillow's built-in font)."""
  from PIL import ImageDraw, ImageFont

  font = ImageFont.load_default()
  measure = ImageDraw.Draw(Image.new("L", (1, 1)))
  size = lambda text: measure.textbbox((0, 0), text, font=font)[2:]  # noqa: E731
  line = max(size("Ag")[1], 1) + 4
  left = max((size(t)[0] for t in layout.rows), default=0) + (8 if layout.rows else 0)
  top = (line if layout.caption else 0) + (line if layout.cols else 0)
  canvas = Image.new(
    picture.mode, (picture.width + left, picture.height + top), 255 if picture.mode == "L" else (255,) * 3
  )
  canvas.paste(picture, (left, top))
  draw, ink = ImageDraw.Draw(canvas), 0 if picture.mode == "L" else (0, 0, 0)
  if layout.caption:
    draw.text((left + pad, 2), layout.caption, fill=ink, font=font)
  for j, text in enumerate(layout.cols):
    x = left + pad + j * cell[1] + (cell[1] - pad - size(text)[0]) // 2
    draw.text((x, top - line + 2), text, fill=ink, font=font)
  for i, text in enumerate(layout.rows):
    y = top + pad + i * cell[0] + (cell[0] - pad - size(text)[1]) // 2
    draw.text((left - 4 - size(text)[0], y), text, fill=ink, font=font)
  return canvas


def save_picture(path: str, picture: Image.Image) -> str:
  """Writes `picture` as a PNG to `path` (a local file or an object in a bucket)."""
  buffer = io.BytesIO()
  picture.save(buffer, format="PNG")
  paths.makedirs(paths.path(path).parent)
  paths.write_atomic(path, buffer.getvalue())
  return path


def save_image_grid(path: str, images, ncols: Optional[int] = None, layout=None) -> str:
  return save_picture(path, image_grid(images, ncols, layout=layout))


class MetricWriter:
  """Appends one JSON object per logged step to metrics.jsonl and mirrors scalars, sample grids
  and texts to TensorBoard (when tensorboardX is installed: without it the run says so once and
  writes metrics.jsonl alone). Only process 0 writes; other processes get a writer that does
  nothing.

  A local metrics.jsonl gets each line as it is written. In a bucket, where an object cannot be
  appended to and each upload rewrites it whole, lines are held and uploaded together by `flush`:
  the loop calls it at every checkpoint (a preempted run's included) and before drawing the loss
  curve, `close` calls it, and a write flushes when the last upload is `flush_every_s` old. So a
  run of n checkpoints uploads the file about n + run time / flush_every_s times, however often it
  logs; a killed process loses at most the lines since the last checkpoint, which its resumed run
  writes again."""

  def __init__(self, workdir: str, enabled: bool = True, flush_every_s: float = 30.0, clock=time.monotonic):
    self.enabled = enabled
    self.path = paths.join(workdir, "metrics.jsonl")
    self.flush_every_s, self._clock = flush_every_s, clock
    self._remote = paths.is_remote(self.path)
    self._uploaded = None  # in a bucket: the object's text as last uploaded (read at the first flush)
    self._held = []  # in a bucket: lines not uploaded yet
    self._last_flush = clock()
    self._tb = None
    if enabled:
      paths.makedirs(workdir)
      try:
        from tensorboardX import SummaryWriter  # imported here: only the writing process needs it
      except ImportError:
        logging.getLogger("genjax").warning(
          "tensorboardX is not installed: no TensorBoard events are written (metrics.jsonl and the "
          "sample pictures are). `pip install tensorboardX` to have them."
        )
      else:
        self._tb = SummaryWriter(paths.join(workdir, "tensorboard"), flush_secs=30)

  def write(self, step: int, scalars: Mapping[str, float]):
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _plain(v) for k, v in scalars.items()}}
    line = json.dumps(record) + "\n"
    if self._remote:
      self._held.append(line)
      if self._clock() - self._last_flush >= self.flush_every_s:
        self.flush()
    else:
      paths.append_line(self.path, line)
    if self._tb is not None:
      for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)):
          self._tb.add_scalar(key, value, step)

  def flush(self):
    """Uploads the lines held for a bucket's metrics.jsonl (one rewrite of the object); nothing to
    do locally, where every line is already written."""
    self._last_flush = self._clock()
    if not self._held:
      return
    if self._uploaded is None:
      self._uploaded = paths.read_text(self.path) if paths.exists(self.path) else ""
    text = self._uploaded + "".join(self._held)
    paths.write_atomic(self.path, text)
    self._uploaded, self._held = text, []

  def write_image(self, tag: str, step: int, picture: Image.Image):
    if self._tb is not None:
      self._tb.add_image(tag, np.asarray(picture.convert("RGB")), step, dataformats="HWC")

  def write_text(self, tag: str, step: int, text: str):
    if self._tb is not None:
      self._tb.add_text(tag, text, step)

  def close(self):
    self.flush()
    if self._tb is not None:
      self._tb.close()


def _plain(value):
  value = np.asarray(value)
  return value.item() if value.size == 1 else value.tolist()


def loss_series(records: list) -> dict:
  """{name: ([steps], [values])} of every loss-like scalar in `records` (names ending in "loss",
  "nll..." or "bits_per_..."; eval_ ones too), in step order: what the loss-curve picture plots."""
  series: dict = {}
  for r in records:
    for name, value in r.items():
      bare = name[len("eval_") :] if name.startswith("eval_") else name
      lossy = bare.endswith("loss") or bare.startswith(("nll", "bits_per_", "bpd"))
      if name != "step" and lossy and isinstance(value, (int, float)) and math.isfinite(value):
        steps, values = series.setdefault(name, ([], []))
        steps.append(int(r["step"]))
        values.append(float(value))
  return series


def loss_curve_picture(records: list, title: str = "") -> Optional[Image.Image]:
  """A PNG-ready picture of loss_series(records) against the step (train lines solid, eval lines
  with markers; a log axis when a curve spans more than a factor of 10), drawn with matplotlib;
  None when matplotlib is not installed or there is nothing to plot."""
  series = loss_series(records)
  try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
  except ImportError:
    return None
  if not series:
    return None
  groups = sorted({name[len("eval_") :] if name.startswith("eval_") else name for name in series})
  figure = Figure(figsize=(4.5 * len(groups), 3.2), dpi=100)
  FigureCanvasAgg(figure)
  for i, group in enumerate(groups):
    ax = figure.add_subplot(1, len(groups), i + 1)
    for name in (group, f"eval_{group}"):
      if name in series:
        steps, values = series[name]
        eval_ = name.startswith("eval_")
        ax.plot(steps, values, "o-" if eval_ else "-", ms=3, lw=1.2, label="eval" if eval_ else "train")
    values = [v for name in (group, f"eval_{group}") if name in series for v in series[name][1]]
    if min(values) > 0 and max(values) > 10 * min(values):
      ax.set_yscale("log")
    ax.set_title(group, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    figure.suptitle(title, fontsize=10)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png")
  return Image.open(io.BytesIO(buffer.getvalue()))


def save_loss_curve(workdir: str, title: str = "") -> Optional[str]:
  """WORKDIR/samples/loss_curve.png from WORKDIR/metrics.jsonl (rewritten at every evaluation),
  for people who do not open TensorBoard; its path, or None when nothing was drawn."""
  picture = loss_curve_picture(read_metrics(workdir), title)
  if picture is None:
    return None
  return save_picture(paths.join(workdir, "samples", "loss_curve.png"), picture)


def read_metrics(workdir: str) -> list:
  """Every record of WORKDIR/metrics.jsonl, in order."""
  path = paths.join(workdir, "metrics.jsonl")
  if not paths.exists(path):
    return []
  return [json.loads(line) for line in paths.read_text(path).splitlines() if line.strip()]
