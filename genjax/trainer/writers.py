"""What a person sees: metrics.jsonl, TensorBoard events, and sample pictures (PNG grids)."""

import io
import json
import logging
import math
from typing import Mapping, Optional

import numpy as np
from PIL import Image

from genjax import errors, paths


def image_grid(images: np.ndarray, ncols: Optional[int] = None, pad: int = 1, min_cell: int = 64) -> Image.Image:
  """A PIL image tiling `images` f32[N,H,W,C] in [-1, 1] (C = 1 or 3; other C show channel 0
  .. 2). Small images are enlarged with nearest-neighbour so each cell is >= `min_cell` px."""
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
  return picture


def save_picture(path: str, picture: Image.Image) -> str:
  """Writes `picture` as a PNG to `path` (a local file or an object in a bucket)."""
  buffer = io.BytesIO()
  picture.save(buffer, format="PNG")
  paths.makedirs(paths.path(path).parent)
  paths.write_atomic(path, buffer.getvalue())
  return path


def save_image_grid(path: str, images, ncols: Optional[int] = None) -> str:
  return save_picture(path, image_grid(images, ncols))


class MetricWriter:
  """Appends one JSON object per logged step to metrics.jsonl and mirrors scalars, sample grids
  and texts to TensorBoard (when tensorboardX is installed: without it the run says so once and
  writes metrics.jsonl alone). Only process 0 writes; other processes get a writer that does
  nothing. In a bucket, where objects cannot be appended to, metrics.jsonl is rewritten whole at
  each write from the lines this writer holds (read once, at the first write)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = paths.join(workdir, "metrics.jsonl")
    self._remote_lines = None
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
    if paths.is_remote(self.path):
      if self._remote_lines is None:
        self._remote_lines = [paths.read_text(self.path)] if paths.exists(self.path) else []
      self._remote_lines.append(line)
      paths.write_atomic(self.path, "".join(self._remote_lines))
    else:
      paths.append_line(self.path, line)
    if self._tb is not None:
      for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)):
          self._tb.add_scalar(key, value, step)

  def write_image(self, tag: str, step: int, picture: Image.Image):
    if self._tb is not None:
      self._tb.add_image(tag, np.asarray(picture.convert("RGB")), step, dataformats="HWC")

  def write_text(self, tag: str, step: int, text: str):
    if self._tb is not None:
      self._tb.add_text(tag, text, step)

  def close(self):
    if self._tb is not None:
      self._tb.close()


def _plain(value):
  value = np.asarray(value)
  return value.item() if value.size == 1 else value.tolist()


def read_metrics(workdir: str) -> list:
  """Every record of WORKDIR/metrics.jsonl, in order."""
  path = paths.join(workdir, "metrics.jsonl")
  if not paths.exists(path):
    return []
  return [json.loads(line) for line in paths.read_text(path).splitlines() if line.strip()]
