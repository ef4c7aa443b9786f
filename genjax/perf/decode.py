"""Does decoding a folder of JPEGs keep up with the train step? (data.name="folder";
`python -m genjax.bench --decode`): images/s decoding generated 64x64 JPEGs beside the images/s
the DCGAN and DDPM train steps consume at 64x64."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from genjax import config as config_lib
from genjax.data.info import DataInfo
from genjax.perf.measure import measure_train
from genjax.perf.registry import load_config, tiny_gan, tiny_unet
from genjax.trainer import program as program_lib

# (label, config, batch on a CPU, test-size model): the step rates a 64x64 image folder must feed
DECODE_VERSUS = (
  ("DCGAN 64x64 (dcgan_celeba64.py)", "experiments/dcgan_celeba64.py", 64, tiny_gan),
  ("DDPM U-Net of ddpm_cifar10.py on 64x64", "experiments/ddpm_cifar10.py", 8, tiny_unet),
)


def run(quick: bool, out: Optional[str]) -> Dict[str, Any]:
  """Images/s decoding generated 64x64 JPEGs (genjax.data.files.FolderSource, per thread count)
  beside the images/s the DCGAN and DDPM train steps consume at 64x64 (synthetic batches), in
  one run so both see the same machine."""
  seconds = 1.0 if quick else 4.0
  rows = _decode_rows(quick, seconds) + _step_rows(quick, seconds)
  slowest_decode = min(r["images_per_s"] for r in rows if r["what"].startswith("decode"))
  fastest_step = max(r["images_per_s"] for r in rows if r["what"].startswith("train"))
  result = {
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "quick": quick,
    "cpu_count": os.cpu_count(),
    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    "rows": rows,
    "decode_over_fastest_step": slowest_decode / fastest_step,
  }
  for r in rows:
    print(f"{r['what']:<60} {r['images_per_s']:>12,.1f} images/s")
  print(
    f"decoding (one thread) / the fastest step's consumption: {result['decode_over_fastest_step']:.1f}x "
    f"(load average {result['load_average']})"
  )
  if out:
    with open(out, "w") as f:
      json.dump(result, f, indent=1, default=float)
  return result


def _decode_rows(quick: bool, seconds: float) -> List[Dict[str, Any]]:
  """Images/s of FolderSource on a folder of generated 64x64 JPEGs, with one thread and the default."""
  from genjax.data import bench_folder, files

  rows = []
  with tempfile.TemporaryDirectory(prefix="genjax-bench-decode-") as folder:
    bench_folder.write_jpegs(folder, 64 if quick else 512, 64)
    for threads in dict.fromkeys((1, files.default_threads())):
      rate = bench_folder.images_per_second(folder, 64, threads, 64, seconds)
      rows.append({"what": f"decode 64x64 JPEGs, {threads} thread(s)", "images_per_s": rate})
      print(f"[decode] {rows[-1]['what']}: {rate:,.0f} images/s", file=sys.stderr, flush=True)
  return rows


def _step_rows(quick: bool, seconds: float) -> List[Dict[str, Any]]:
  """Images/s each train step of DECODE_VERSUS consumes at 64x64 (synthetic batches)."""
  rows = []
  info = DataInfo(name="folder", kind="image", shape=(64, 64, 3))
  for label, spec, batch, tiny in DECODE_VERSUS:
    exp = load_config(spec)
    exp = dataclasses.replace(
      exp,
      model=tiny(exp.model) if quick else exp.model,
      train=dataclasses.replace(exp.train, batch_size=8 if quick else batch, steps_per_call=1, progress=False),
      parallel=config_lib.Parallel(mode="jit", num_devices=1),
    )
    train = measure_train(program_lib.build(exp, info), min_time=seconds, max_steps=3 if quick else 50)
    rows.append(
      {
        "what": f"train step: {label}, batch {exp.train.batch_size}",
        "images_per_s": train["examples_per_s"],
        "seconds_per_step": train["seconds_per_step"],
      }
    )
    print(f"[decode] {rows[-1]['what']}: {train['examples_per_s']:,.1f} images/s", file=sys.stderr, flush=True)
  return rows
