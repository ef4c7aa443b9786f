"""Fingerprints of every experiment config: a refactor must keep them bit for bit (on CPU).

    python tests/fingerprints.py --out before.json [--only NAME,...] [--modes jit,pmap]
    python tests/fingerprints.py --compare before.json after.json

Each config trains a few steps through the real loop (`genjax.train.loop.train`) on 2 simulated
CPU devices, in jit and in pmap mode, with a small batch and an evaluation (and sample picture)
at the end. Recorded: every logged metric of every step, the eval metrics, a SHA-256 of the
parameters, of the EMA parameters and of the other variable collections (each leaf named by its
path, sorted), and of the sample grid's PNG. Not a test: the numbers come from the code itself,
so they can only say "unchanged", which is what a refactor must show.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile

if __name__ == "__main__" and "--compare" not in sys.argv:
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from genjax.cli import apply_cpu_tuning, simulated_devices_xla_flags

  os.environ["XLA_FLAGS"] = simulated_devices_xla_flags(2, os.environ.get("XLA_FLAGS", ""))
  apply_cpu_tuning()  # genjax's commands' XLA:CPU flags and Threefry lowering
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# config spec (with a #label when one file is fingerprinted twice) -> overrides that keep a few steps
# affordable on a CPU (applied before and after).
CONFIGS = {
  "default.py": {},
  "classifier_mnist.py": {},
  "dcgan_mnist.py": {},
  "wgan_gp_mnist.py": {"train.batch_size": "20", "eval.batch_size": "20"},
  "pacgan_stacked_mnist.py:1": {},
  "pacgan_stacked_mnist.py:2": {},
  "sngan_fashion_mnist.py:cnn": {},
  "sngan_fashion_mnist.py:resnet_cond": {},
  "vae_binarized_mnist.py:vae": {},
  "vae_binarized_mnist.py:iwae": {},
  "vae_binarized_mnist.py:iwae2": {},
  "vae_fixed_binarized_mnist.py": {},
  "vae_conv_fashion_mnist.py": {},
  "vae_pythae_binarized_mnist.py": {},
  "vqvae_fashion_mnist.py:cpu": {},
  "gpt_shakespeare_char.py:cpu": {},
  "gpt_shakespeare_char.py": {},
  "gpt2_small.py": {"train.batch_size": "2", "eval.batch_size": "2"},
  "pixelcnn_binarized_mnist.py:cpu": {},
  "ddpm_mnist.py:cpu": {"model.sampler": "ddim", "model.sample_steps": "3"},
  "ddpm_fashion_mnist.py": {"model.sampler": "ddim", "model.sample_steps": "3"},
  "flow_mnist.py:cpu": {"model.sample_steps": "2"},
  "ddpm_mnist.py:cpu#edm": {"model.formulation": "edm", "model.sampler": "heun", "model.sample_steps": "2"},
}

SMALL = {
  "train.steps": "3",
  "train.log_every": "1",
  "train.eval_every": "3",
  "train.checkpoint_every": "3",
  "train.steps_per_call": "1",
  "train.progress": "false",
  "train.async_checkpoints": "false",
  "eval.num_batches": "1",
  "eval.num_samples": "4",
  "eval.sample_length": "8",
  "parallel.num_devices": os.environ.get("FINGERPRINT_DEVICES", "2"),
}


def tree_hash(tree) -> str:
  import jax
  import numpy as np

  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.asarray(jax.device_get(leaf))
    h.update(jax.tree_util.keystr(path).encode())
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:16]


def fingerprint(spec: str, mode: str) -> dict:
  from genjax import config as config_lib

  try:
    from genjax.trainer import loop, writers
    from genjax.trainer import workdir as restorer
  except ImportError:  # before the trainer / toolkit split
    from genjax.trainer import loop, writers

    restorer = loop
  exp = config_lib.load_config_file(os.path.join(ROOT, "experiments", spec.split("#")[0]))
  train = exp.train
  overrides = {**SMALL, "parallel.mode": mode, **CONFIGS[spec]}
  batch = int(overrides.get("train.batch_size", min(train.batch_size, 8)))
  pack = getattr(exp.model, "pack", 1)
  batch = max(batch, 2 * pack) // (2 * pack) * (2 * pack)
  overrides.setdefault("train.batch_size", str(batch))
  overrides.setdefault("eval.batch_size", str(batch))
  exp = config_lib.apply_overrides(exp, overrides)
  exp = (
    dataclasses.replace(exp, optim=dataclasses.replace(exp.optim, decay_steps=exp.optim.decay_steps or train.steps))
    if exp.optim.schedule == "warmup_cosine"
    else exp
  )
  with tempfile.TemporaryDirectory() as workdir:
    loop.train(exp, workdir)
    records = writers.read_metrics(workdir)
    _, _, state, _ = restorer.restore(workdir)
    pictures = {}
    sample_dir = os.path.join(workdir, "samples")
    for name in sorted(os.listdir(sample_dir)) if os.path.isdir(sample_dir) else []:
      with open(os.path.join(sample_dir, name), "rb") as f:
        pictures[name] = hashlib.sha256(f.read()).hexdigest()[:16]
  for r in records:
    r.pop("steps_per_sec", None)
  return {
    "metrics": records,
    "params": tree_hash(state.params),
    "ema": tree_hash(state.ema_params) if state.ema_params is not None else None,
    "extra": tree_hash(state.extra),
    "step": int(state.step),
    "pictures": pictures,
  }


def compare(a_path: str, b_path: str) -> int:
  with open(a_path) as f:
    a = json.load(f)
  with open(b_path) as f:
    b = json.load(f)
  bad = 0
  print(f"{'config':40s} {'mode':5s} {'losses':8s} {'params':8s} {'ema':8s} {'extra':8s} {'samples':8s}")
  for key in sorted(set(a) | set(b)):
    if key not in a or key not in b:
      print(f"{key:46s} only in {'before' if key in a else 'after'}")
      continue
    x, y = a[key], b[key]
    if "error" in x or "error" in y:
      print(f"{key:46s} error: {x.get('error') or y.get('error')}")
      bad += 1
      continue
    same = {
      "losses": x["metrics"] == y["metrics"],
      "params": x["params"] == y["params"],
      "ema": x["ema"] == y["ema"],
      "extra": x["extra"] == y["extra"],
      "samples": x["pictures"] == y["pictures"],
    }
    spec, mode = key.rsplit("|", 1)
    print(f"{spec:40s} {mode:5s} " + " ".join(f"{'same' if v else 'DIFF':8s}" for v in same.values()))
    bad += not all(same.values())
  return bad


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out")
  parser.add_argument("--only", default="")
  parser.add_argument("--modes", default="jit,pmap")
  parser.add_argument("--compare", nargs=2)
  args = parser.parse_args()
  if args.compare:
    sys.exit(1 if compare(*args.compare) else 0)
  import logging

  logging.basicConfig(level=logging.WARNING)
  specs = [s for s in args.only.split(",") if s] or list(CONFIGS)
  results = {}
  if args.out and os.path.exists(args.out):
    with open(args.out) as f:
      results = json.load(f)
  for spec in specs:
    for mode in args.modes.split(","):
      key = f"{spec}|{mode}"
      try:
        results[key] = fingerprint(spec, mode)
      except Exception as e:  # noqa: BLE001 - recorded, the others still run
        results[key] = {"error": f"{type(e).__name__}: {e}"}
      print(key, json.dumps(results[key])[:200], flush=True)
      if args.out:
        with open(args.out, "w") as f:
          json.dump(results, f, indent=1, sort_keys=True)


if __name__ == "__main__":
  main()
