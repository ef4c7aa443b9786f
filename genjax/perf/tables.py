"""The benchmark's printed tables: one row of figures per config (format_table), where each
config's step time goes (format_time_table), the report that ends a run (report), and the
markdown table of the memory benchmark (format_memory)."""

from __future__ import annotations

from typing import Any, Dict, List

from genjax.perf import hlo_profile

COLUMNS = [
  ("name", "{}", 22),
  ("batch", "{}", 5),
  ("train_examples_per_s", "{:.1f}", 9),
  ("flops_per_step", "{:.3g}", 9),
  ("mfu_measured", "{:.2f}", 5),
  ("mfu_peak", "{:.3f}", 6),
  ("first_step_s", "{:.1f}", 6),
  ("peak_memory_bytes", "{:.3g}", 8),
  ("pipeline_over_train", "{:.1f}", 8),
  ("sample_s_per_image", "{:.3g}", 8),
  ("sample_s_per_token_long", "{:.3g}", 8),
  ("checkpoint_blocked_s", "{:.3f}", 7),
  ("checkpoint_total_s", "{:.3f}", 7),
  ("loop_outside_step_fraction", "{:.3f}", 7),
]
HEADERS = [
  "config",
  "batch",
  "ex/s",
  "FLOP/step",
  "MFU",
  "MFUpk",
  "1st s",
  "mem B",
  "pipe/x",
  "s/img",
  "s/tok",
  "ckpt_blk",
  "ckpt_all",
  "outside",
]


def format_time_table(rows: List[Dict[str, Any]]) -> str:
  """Where each config's step time goes: ms per step of the compiled step, of making its batch
  on the host and of a step in the loop; and the shares of the step's op time by phase (with
  the share of matmuls and convolutions) from a profiler trace."""
  phases = list(hlo_profile.PHASES)
  head = ["config", "step ms", "input ms", "loop ms"] + [p.split()[0][:8] for p in phases] + ["matmul"]
  widths = [22, 8, 8, 8] + [8] * len(phases) + [7]
  lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
  for row in rows:
    cells = [row["name"], row.get("time_step_ms"), row.get("time_input_ms"), row.get("time_loop_ms")]
    cells += [row.get(f"profile_{p}") for p in phases] + [row.get("profile_matmul")]
    text = []
    for i, (cell, w) in enumerate(zip(cells, widths)):
      if cell is None:
        text.append("-".rjust(w))
      elif i == 0:
        text.append(str(cell).rjust(w))
      elif i < 4:
        text.append(f"{cell:.3g}".rjust(w))
      else:
        text.append(f"{cell:.0%}".rjust(w))
    lines.append("  ".join(text))
  return "\n".join(lines)


def format_table(rows: List[Dict[str, Any]]) -> str:
  lines = ["  ".join(h.rjust(w) for h, (_, _, w) in zip(HEADERS, COLUMNS))]
  for row in rows:
    cells = []
    for key, fmt, width in COLUMNS:
      value = row.get(key)
      cells.append(("-" if value is None else fmt.format(value)).rjust(width))
    lines.append("  ".join(cells))
  return "\n".join(lines)


def format_memory(rows: List[Dict[str, Any]]) -> str:
  gib = lambda b: f"{b / 2**30:.2f}"
  lines = [
    "| model | parameters | layout | state (parameters and optimizer state) GiB/device | compiled step GiB/device "
    "(arguments / temporaries / outputs, aliased) |",
    "| --- | --- | --- | --- | --- |",
  ]
  for r in rows:
    layout = {("jit", 1): "replicated", ("fsdp", 1): "FSDP"}.get(
      (r["mode"], r["model_parallel"]), f"FSDP x tensor parallel {r['model_parallel']}"
    )
    lines.append(
      f"| {r['config'].split('/')[-1]} | {r['parameters'] / 1e6:.0f}M | {layout} ({r['devices']} devices) | "
      f"{gib(r['state_bytes_per_device'])} | {gib(r['total_bytes'])} ({gib(r['argument_bytes'])} / "
      f"{gib(r['temp_bytes'])} / {gib(r['output_bytes'])}, {gib(r['alias_bytes'])}) |"
    )
  return "\n".join(lines)


def report(rows: List[Dict[str, Any]], device, rates: Dict[str, float], load_average) -> str:
  """What a benchmark run prints at its end: both tables, the MFU notes, the device's line."""
  lines = [format_table(rows)]
  lines.append("\nWhere a step's time goes (ms per step; phases as shares of the step's op time, genjax.profile):")
  lines.append(format_time_table([r for r in rows if "error" not in r]))
  for row in rows:
    if row.get("mfu_note"):
      lines.append(f"  {row['name']}: MFU below 0.40 on this CPU: {row['mfu_note']}")
  lines.append(
    f"device {device.platform} ({getattr(device, 'device_kind', '')}), load average "
    f"{load_average}, matmul FLOP/s " + ", ".join(f"{k} {v:.3g}" for k, v in rates.items())
  )
  return "\n".join(lines)
