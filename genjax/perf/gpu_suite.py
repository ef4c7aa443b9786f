"""The GPU suite behind `python -m genjax.reproduce gpu` (its --help says what each item
measures): a Suite runs child commands with deadlines; ITEMS are what it measures, each
time-boxed in its own processes; run() runs the chosen items within the budget, appending each
item's record to DIR/results.jsonl and its rows for experiments/RESULTS.md to DIR/results.md the
moment it ends."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from typing import Callable, List, Optional

from genjax import compile_cache

PEAK_NOTE = "H100/H200 dense bf16 data-sheet peak 989 TFLOP/s"


@dataclasses.dataclass(frozen=True)
class Item:
  name: str
  box_s: int  # the item's wall-clock budget on a GPU, its processes included
  run: Callable  # (suite: Suite) -> dict of results
  what: str
  default: bool = True  # in the suite run without --only (else only when --only names it)


class Suite:
  """Runs child commands with deadlines and records what they measured."""

  def __init__(self, out: str, data_dir: Optional[str], dry_run: bool, budget_s: float):
    self.out, self.dry_run, self.budget_s = os.path.abspath(out), dry_run, budget_s
    self.start = time.monotonic()
    self.env = dict(os.environ, GENJAX_HOME=os.path.join(self.out, "genjax_home"), PYTHONUNBUFFERED="1")
    # the children share this command's compilation cache, kept out of --out (which is copied back)
    self.env[compile_cache.ENV_SWITCH] = compile_cache.chosen_dir() or "off"
    if data_dir:
      self.env["GENJAX_DATA_DIR"] = os.path.abspath(data_dir)
    os.makedirs(self.out, exist_ok=True)

  def left_s(self) -> float:
    return self.budget_s - (time.monotonic() - self.start)

  def command(self, args: List[str], timeout_s: float, log: str, stop_signal=signal.SIGTERM) -> dict:
    """Runs `python -m ARGS`, sending `stop_signal` at the timeout (a training run then checkpoints
    and exits 75) and killing it 60 s later; returns its exit code, wall time and output."""
    os.makedirs(os.path.dirname(log), exist_ok=True)
    t0 = time.monotonic()
    with open(log, "w") as f:
      proc = subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=f, text=True, env=self.env, start_new_session=True
      )
      try:
        stdout, _ = proc.communicate(timeout=max(timeout_s, 1))
        stopped = False
      except subprocess.TimeoutExpired:
        proc.send_signal(stop_signal)
        stopped = True
        try:
          stdout, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
          os.killpg(proc.pid, signal.SIGKILL)
          stdout, _ = proc.communicate()
    return {
      "code": proc.returncode,
      "seconds": round(time.monotonic() - t0, 1),
      "stopped_at_box": stopped,
      "stdout": stdout,
      "log": log,
    }

  def last_json(self, stdout: str) -> dict:
    for line in reversed((stdout or "").strip().splitlines()):
      if line.startswith("{"):
        return json.loads(line)
    return {}


# ----------------------------------------------------------------------------------------------
# Items
# ----------------------------------------------------------------------------------------------


def _bench_rows(suite: Suite, item: str, names: str, dtype: str, box_s: float) -> dict:
  """`python -m genjax.bench --only NAMES --dtype DTYPE --no-loop` within box_s: its rows."""
  path = os.path.join(suite.out, item, f"bench_{dtype}.json")
  args = ["genjax.bench", "--only", names, "--dtype", dtype, "--no-loop", "--out", path]
  args += ["--quick"] if suite.dry_run else ["--min_time", "3"]
  run = suite.command(args, box_s, os.path.join(suite.out, item, f"bench_{dtype}.log"))
  rows = json.load(open(path))["rows"] if os.path.exists(path) else []
  return {"seconds": run["seconds"], "code": run["code"], "rows": rows}


def _bench(suite: Suite) -> dict:
  """Both models in bfloat16 and in float32, and the ratio of their rates. A dry run benches
  bfloat16 alone: float32 is the same command with another --dtype, and its minute on a CPU
  would rehearse nothing the bfloat16 run does not."""
  out = {}
  dtypes = ("bfloat16",) if suite.dry_run else ("bfloat16", "float32")
  for dtype in dtypes:
    box = suite.left_s() if dtype == dtypes[-1] else suite.left_s() * 0.55
    out[dtype] = _bench_rows(suite, "bench", "gpt2_small,ddpm_cifar10", dtype, box)
  if len(dtypes) < 2:
    return out
  for name in ("gpt2_small", "ddpm_cifar10"):
    rates = {
      d: next((r.get("train_examples_per_s") for r in out[d]["rows"] if r.get("name") == name), None)
      for d in ("bfloat16", "float32")
    }
    if all(rates.values()):
      out[f"{name}_bf16_over_f32"] = rates["bfloat16"] / rates["float32"]
  return out


def _llama(suite: Suite) -> dict:
  """Llama 3.2 1B's architecture (experiments/llama_1b.py) in bfloat16: a 1.24B model's float32
  step would hold twice the activations and run at a fraction of the rate, so it is left out."""
  return {"bfloat16": _bench_rows(suite, "llama", "llama_1b", "bfloat16", suite.left_s())}


def _dit(suite: Suite) -> dict:
  """DiT-XL/2 (experiments/dit_imagenet256.py) on synthetic SD latents in bfloat16: images/s and
  MFU of the paper's model at its batch (the frozen autoencoder's encoding left out)."""
  return {"bfloat16": _bench_rows(suite, "dit", "dit_xl2", "bfloat16", suite.left_s())}


def _train_then_evaluate(
  suite: Suite,
  item: str,
  config: str,
  overrides: List[str],
  evaluate: List[str],
  eval_box_s: float,
  workdir: Optional[str] = None,
) -> dict:
  workdir = workdir or os.path.join(suite.out, item, "run")
  train_box = max(suite.left_s() - eval_box_s, 5)
  train = suite.command(
    ["genjax.train", "--config", config, "--workdir", workdir, *overrides, "--config.train.progress=false"],
    train_box,
    os.path.join(suite.out, item, "train.log"),
  )
  result = {
    "config": config,
    "overrides": overrides,
    "train_seconds": train["seconds"],
    "train_code": train["code"],
    "stopped_at_box": train["stopped_at_box"],
  }
  metrics = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics):
    records = [json.loads(line) for line in open(metrics) if line.strip()]
    losses = [r for r in records if "loss" in r or "d_loss" in r]
    result["steps_done"] = max((r["step"] for r in records), default=0)
    result["last_logged"] = losses[-1] if losses else None
    rates = [r["steps_per_sec"] for r in records if r.get("steps_per_sec")]
    result["steps_per_sec_last"] = rates[-1] if rates else None
  if train["code"] not in (0, 75):
    result["error"] = f"training exited with {train['code']}; see {train['log']}"
    return result
  run = suite.command(
    ["genjax.evaluate", "--workdir", workdir, *evaluate],
    max(suite.left_s(), 5),
    os.path.join(suite.out, item, "evaluate.log"),
  )
  result["evaluate_seconds"] = run["seconds"]
  result["evaluation"] = suite.last_json(run["stdout"])
  if run["code"] != 0:
    result["error"] = f"evaluate exited with {run['code']}; see {run['log']}"
  return result


def _tiny_gpt(dry: bool) -> List[str]:
  return (
    [
      "--config.model.num_layers=1",
      "--config.model.num_heads=2",
      "--config.model.width=32",
      "--config.data.block_size=32",
      "--config.train.batch_size=8",
      "--config.train.steps=4",
      "--config.optim.warmup_steps=0",
      "--config.train.eval_every=4",
      "--config.train.checkpoint_every=4",
      "--config.train.log_every=2",
      "--config.eval.num_batches=1",
      "--config.eval.sample_length=8",
    ]
    if dry
    # nanoGPT's 5000 steps; one evaluation (the whole validation split, by genjax.evaluate) and
    # one sample at the end instead of every 250 steps, 10 steps per compiled call.
    else ["--config.train.eval_every=5000", "--config.train.log_every=100", "--config.train.steps_per_call=10"]
  )


def _shakespeare(suite: Suite) -> dict:
  return _train_then_evaluate(
    suite,
    "shakespeare",
    _experiment("gpt_shakespeare_char.py"),
    _tiny_gpt(suite.dry_run),
    ["--max_examples", "4"] if suite.dry_run else [],
    eval_box_s=25,
  )


def _classifier(suite: Suite) -> dict:
  overrides = (
    [
      "--config.train.steps=4",
      "--config.train.eval_every=4",
      "--config.train.checkpoint_every=4",
      "--config.train.log_every=2",
      "--config.eval.num_batches=1",
      "--config.optim.warmup_steps=0",
    ]
    if suite.dry_run
    else []
  )
  return _train_then_evaluate(
    suite,
    "classifier",
    _experiment("classifier_mnist.py"),
    overrides,
    ["--max_examples", "16"] if suite.dry_run else [],
    eval_box_s=15,
    workdir=os.path.join(suite.env["GENJAX_HOME"], "classifiers", "mnist"),
  )


def _pacgan(m: int) -> Callable:
  def run(suite: Suite) -> dict:
    tiny = [
      "--config.model.g_widths=32,16,8,4",
      "--config.model.d_widths=4,8,16,32",
      "--config.train.steps=4",
      "--config.train.log_every=2",
      "--config.train.eval_every=4",
      "--config.train.checkpoint_every=4",
      "--config.eval.num_batches=1",
    ]
    full = [
      "--config.train.steps_per_call=50",
      "--config.train.log_every=1000",
      "--config.train.eval_every=100000",
      "--config.train.checkpoint_every=5000",
    ]
    evaluate = ["--metrics", "modes"] + (["--num_samples", "260"] if suite.dry_run else [])
    return _train_then_evaluate(
      suite,
      f"pacgan{m}",
      _experiment(f"pacgan_stacked_mnist.py:{m}"),
      tiny if suite.dry_run else full,
      evaluate,
      eval_box_s=40,
    )

  return run


def _iwae(suite: Suite) -> dict:
  overrides = (
    [
      "--config.model.hidden=16",
      "--config.model.latents=4",
      "--config.model.eval_samples=10",
      "--config.model.eval_chunk=5",
      "--config.train.steps=4",
      "--config.train.steps_per_call=2",
      "--config.train.log_every=2",
      "--config.train.eval_every=4",
      "--config.train.checkpoint_every=4",
      "--config.eval.num_batches=1",
    ]
    if suite.dry_run
    else [
      "--config.train.steps_per_call=1000",
      "--config.train.log_every=10000",
      "--config.train.eval_every=1000000",
      "--config.train.checkpoint_every=20000",
    ]
  )
  return _train_then_evaluate(
    suite,
    "iwae",
    _experiment("vae_binarized_mnist.py:vae"),
    overrides,
    ["--max_examples", "8" if suite.dry_run else "1000"],
    eval_box_s=40,
  )


ITEMS = [
  Item("bench", 170, _bench, "gpt2_small and ddpm_cifar10, bfloat16 and float32"),
  Item("shakespeare", 175, _shakespeare, "nanoGPT shakespeare_char, 5000 steps, validation loss"),
  Item("classifier", 45, _classifier, "MNIST classifier for the mode counts"),
  Item("pacgan1", 75, _pacgan(1), "Stacked MNIST DCGAN: modes / KL"),
  Item("pacgan2", 75, _pacgan(2), "Stacked MNIST PacDCGAN2: modes / KL"),
  Item("iwae", 60, _iwae, "IWAE-paper VAE, as many steps as fit"),
  Item("llama", 240, _llama, "Llama 3.2 1B's architecture, bfloat16 (only with --only llama)", default=False),
  Item("dit", 240, _dit, "DiT-XL/2 on SD latents, bfloat16 (only with --only dit)", default=False),
]


# the checkout that holds this package: genjax/perf/gpu_suite.py -> the folder above genjax/
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _experiment(spec: str) -> str:
  return os.path.join(REPO_ROOT, "experiments", spec)


# ----------------------------------------------------------------------------------------------
# Recording
# ----------------------------------------------------------------------------------------------


def device_description() -> dict:
  import jax

  device = jax.devices()[0]
  return {
    "platform": device.platform,
    "kind": getattr(device, "device_kind", ""),
    "count": jax.device_count(),
    "jax": jax.__version__,
  }


def markdown_rows(record: dict, device: str, date: str) -> List[str]:
  """Rows for experiments/RESULTS.md from one item's record."""
  name, res = record["item"], record.get("result", {})
  cmd = f"`python -m genjax.reproduce gpu --out DIR --only {name}`"
  rows = []
  if name in ("bench", "llama", "dit"):
    for dtype in ("bfloat16", "float32"):
      for row in res.get(dtype, {}).get("rows", []):
        if "error" in row:
          rows.append(f"| {name} | {row['name']} {dtype} | error: {row['error'][:120]} | {cmd} | {device} | {date} |")
          continue
        rate = row.get("train_tokens_per_s") or row.get("train_examples_per_s")
        unit = "tokens/s" if row.get("train_tokens_per_s") else "examples/s"
        peak = f"{row['mfu_peak']:.3f}" if row.get("mfu_peak") is not None else "- (no data-sheet peak)"
        rows.append(
          f"| {name} | {row['name']} {dtype} batch {row['batch']} | {rate:.4g} {unit}; MFU {peak} "
          f"of peak, {row['mfu_measured']:.3f} of measured matmul; compile {row['compile_s']:.1f} s; "
          f"peak memory {row['peak_memory_bytes'] / 2**30:.2f} GiB | {cmd} | {device} | {date} |"
        )
    for key in ("gpt2_small_bf16_over_f32", "ddpm_cifar10_bf16_over_f32"):
      if key in res:
        rows.append(f"| bench | {key} | {res[key]:.2f}x | {cmd} | {device} | {date} |")
    return rows
  if "error" in record:
    return [f"| {name} | - | error: {record['error'][:200]} | {cmd} | {device} | {date} |"]
  ev = res.get("evaluation", {}).get("metrics", {})
  shown = ", ".join(
    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
    for k, v in ev.items()
    if k in ("loss", "modes", "kl", "nll", "bits_per_dim", "accuracy")
  )
  rows.append(
    f"| {name} | {res.get('steps_done', '?')} steps in {res.get('train_seconds', '?')} s"
    f"{' (stopped at its time box)' if res.get('stopped_at_box') else ''} | {shown or res.get('error', '-')} | "
    f"{cmd} | {device} | {date} |"
  )
  return rows


def run(names: List[str], out: str, data_dir: Optional[str], dry_run: bool, budget_s: float):
  """The items of ITEMS named in `names`, in order, each in its share of `budget_s` (a dry run:
  whatever is left), each one's record written the moment it ends."""
  suite = Suite(out, data_dir, dry_run, budget_s)
  device = device_description()
  where = f"{device['kind'] or device['platform']} (jax {device['jax']})"
  date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
  results_path, table_path = os.path.join(suite.out, "results.jsonl"), os.path.join(suite.out, "results.md")
  for item in [i for i in ITEMS if i.name in names]:
    record = _run_item(item, suite, names, data_dir)
    record.update(device=device, date=date)
    with open(results_path, "a") as f:
      f.write(json.dumps(record, default=str) + "\n")
    if "skipped" not in record:
      with open(table_path, "a") as f:
        f.write("\n".join(markdown_rows(record, where, date)) + "\n")
    print(
      f"[{item.name}] {_outcome(record)} ({record.get('seconds', 0)} s; {suite.left_s():.0f} s of the budget left)",
      file=sys.stderr,
      flush=True,
    )
  print(f"results: {results_path}\ntable: {table_path}", file=sys.stderr)


def _run_item(item: Item, suite: Suite, names: List[str], data_dir: Optional[str]) -> dict:
  """One item's record: its results in its own time box (its share of the suite's budget), its
  error, or why it was skipped (too little of the budget left)."""
  total_box = sum(i.box_s for i in ITEMS if i.name in names)
  box = item.box_s * (suite.budget_s / total_box) if not suite.dry_run else max(suite.left_s(), 60)
  if suite.left_s() < min(box, 20):
    return {"item": item.name, "skipped": f"{suite.left_s():.0f} s of the budget left"}
  item_suite = Suite(suite.out, data_dir, suite.dry_run, min(box, suite.left_s()))
  t0 = time.monotonic()
  try:
    record = {"item": item.name, "what": item.what, "result": item.run(item_suite)}
    if "error" in record["result"]:
      record["error"] = record["result"]["error"]
  except Exception as e:  # noqa: BLE001 - one item's failure is recorded, the next one runs
    record = {"item": item.name, "error": f"{type(e).__name__}: {e}"}
  record["seconds"] = round(time.monotonic() - t0, 1)
  return record


def _outcome(record: dict) -> str:
  if "skipped" in record:
    return "skipped: " + record["skipped"]
  return "error: " + record["error"] if "error" in record else "done"
