"""Every family end to end on whatever JAX stack runs the tests: train a few steps, checkpoint,
resume, sample and evaluate, on 1 and 4 devices under jit and pmap (a checkpoint written under
jit resumed under pmap); and the GPU suite's CPU dry run. `.ci/run` runs these (marker `stack`) on a second stack too: Python 3.12 with the newest
JAX, Flax, optax and Orbax, and no TensorFlow Datasets, array_record or tensorboardX (as on the
accelerator machine), reading text from a portable export.
"""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from genjax import config as C
from genjax.data import export
from genjax.families import autoregressive, classifier, diffusion, gan, vae
from genjax.trainer import loop, writers

pytestmark = pytest.mark.stack
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40


@pytest.fixture(scope="module")
def text_export(tmp_path_factory):
  """A tiny_shakespeare export written by hand (the format genjax.data.export writes)."""
  root = tmp_path_factory.mktemp("export")
  folder = root / "tiny_shakespeare"
  folder.mkdir()
  cut1, cut2 = int(len(TEXT) * 0.9), int(len(TEXT) * 0.95)
  parts = {"train": TEXT[:cut1], "validation": TEXT[cut1:cut2], "test": TEXT[cut2:]}
  for split, text in parts.items():
    (folder / f"{split}.txt").write_text(text, encoding="utf-8")
  (folder / export.MARKER).write_text(
    json.dumps(
      {
        "format": export.FORMAT_VERSION,
        "name": "tiny_shakespeare",
        "kind": "text",
        "splits": {k: len(v) for k, v in parts.items()},
      }
    )
  )
  return str(root)


def experiments(text_dir):
  digits = C.Data(name="digits")
  return {
    "vae": C.Experiment(
      family="vae",
      model=vae.Config(hidden=(16,), latents=(4,), eval_samples=10, eval_chunk=5, eval_step_samples=2),
      data=digits,
    ),
    "gan": C.Experiment(
      family="gan",
      model=gan.Config(g_widths=(16, 8), d_widths=(8, 16), latent_dim=8, kernel_size=3),
      data=digits,
      optim=C.Optim(learning_rate=2e-4, b1=0.5, ema_decay=0.9),
    ),
    "gpt": C.Experiment(
      family="autoregressive",
      model=autoregressive.GPTConfig(num_layers=1, num_heads=2, width=16, dropout=0.1),
      data=C.Data(
        name="tiny_shakespeare", data_dir=text_dir, block_size=16, train_split="nanogpt_train", eval_split="nanogpt_val"
      ),
    ),
    "pixelcnn": C.Experiment(
      family="autoregressive",
      model=autoregressive.PixelCNNConfig(num_layers=2, channels=8, output_channels=8),
      data=dataclasses.replace(digits, binarize="threshold"),
    ),
    "diffusion": C.Experiment(
      family="diffusion",
      model=diffusion.Config(
        ch=32,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=(),
        timesteps=20,
        sampler="ddim",
        sample_steps=3,
        eval_max_examples=2,
      ),
      data=digits,
      optim=C.Optim(ema_decay=0.99),
    ),
    "classifier": C.Experiment(family="classifier", model=classifier.Config(channels=(4,), feature_dim=8), data=digits),
  }


def _run(exp, workdir, steps, mode, devices):
  exp = dataclasses.replace(
    exp,
    name="stack",
    train=C.Train(steps=steps, batch_size=8, log_every=1, eval_every=2, checkpoint_every=2, progress=False),
    eval=C.Eval(num_batches=1, batch_size=8, num_samples=4, sample_length=4),
    parallel=C.Parallel(mode=mode, num_devices=devices),
  )
  return loop.train(exp, workdir)


def _losses(workdir):
  return [
    (r["step"], r.get("loss", r.get("d_loss"))) for r in writers.read_metrics(workdir) if "loss" in r or "d_loss" in r
  ]


# The GPU suite's dry run first, then the families from the quickest: the order .ci/run's second
# stack (two workers, --dist worksteal) needs to finish in about the longest test plus the shortest
# ones (there: dry run 102 s; diffusion 47, gan 35, pixelcnn 28, gpt 20, vae 18, classifier 13).
def test_the_gpu_suite_dry_run_measures_every_item(tmp_path):
  """`python -m genjax.reproduce gpu --dry_run`: every item of the GPU suite, tiny, on this CPU, from
  a portable export (GENJAX_EXPORT_DIR: mnist, tiny_shakespeare, binarized_mnist), so the first
  minutes on a GPU are not spent on an import or shape error. It rehearses the accelerator
  machine, whose stack has no TensorFlow Datasets: `.ci/run` runs it on its second stack, which is
  that stack, and a stack with TFDS skips it (4-5 minutes on a 2-core CPU)."""
  if importlib.util.find_spec("tensorflow_datasets") is not None:
    pytest.skip(
      "the GPU suite's dry run rehearses the accelerator machine's stack, which has no TensorFlow "
      "Datasets; .ci/run runs it on that stack (requirements-py312.txt). Here: python -m "
      "genjax.reproduce gpu --dry_run --out DIR --data_dir $GENJAX_EXPORT_DIR"
    )
  data = os.environ.get("GENJAX_EXPORT_DIR")
  if not data or not all(
    os.path.isdir(os.path.join(data, n)) for n in ("mnist", "tiny_shakespeare", "binarized_mnist")
  ):
    pytest.skip(
      "needs GENJAX_EXPORT_DIR with mnist, tiny_shakespeare and binarized_mnist exported "
      "(python -m genjax.data.export; .ci/run makes it)"
    )
  out = tmp_path / "suite"
  # one device, as on the accelerator machine; the tests' LLVM optimisation level (conftest.py)
  level = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.startswith("--xla_backend_optimization_level=")]
  env = dict(os.environ, XLA_FLAGS=" ".join(level), PYTHONPATH=REPO)
  run = subprocess.run(
    [sys.executable, "-m", "genjax.reproduce", "gpu", "--dry_run", "--out", str(out), "--data_dir", data],
    capture_output=True,
    text=True,
    timeout=1500,
    cwd=REPO,
    env=env,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  records = [json.loads(line) for line in open(out / "results.jsonl")]
  assert [r["item"] for r in records] == ["bench", "shakespeare", "classifier", "pacgan1", "pacgan2", "iwae"]
  failed = {r["item"]: r.get("error") or r.get("skipped") for r in records if "error" in r or "skipped" in r}
  assert not failed, failed
  by_name = {r["item"]: r["result"] for r in records}
  assert {row["name"] for row in by_name["bench"]["bfloat16"]["rows"]} == {"gpt2_small", "ddpm_cifar10"}
  assert by_name["shakespeare"]["evaluation"]["metrics"]["loss"] > 0
  assert 0 < by_name["pacgan2"]["evaluation"]["metrics"]["modes"] <= 1000
  assert by_name["iwae"]["evaluation"]["metrics"]["nll"] > 0
  table = (out / "results.md").read_text()
  assert "gpt2_small bfloat16" in table and "pacgan2" in table


@pytest.mark.parametrize("name", ["classifier", "vae", "gpt", "pixelcnn", "gan", "diffusion"])
def test_each_family_trains_resumes_samples_and_evaluates(name, text_export, tmp_path, capsys):
  exp = experiments(text_export)[name]
  straight = str(tmp_path / "straight")
  _run(exp, straight, 4, "jit", 1)
  # Steps 1-2 then 3-4 (resumed from the step-2 checkpoint) on one device: bit-exact. On 4 devices,
  # steps 1-2 under jit then 3-4 under pmap from the same checkpoint: the same to float rounding.
  for first, then in ((("jit", 1), ("jit", 1)), (("jit", 4), ("pmap", 4))):
    workdir = str(tmp_path / f"{first[0]}{first[1]}_{then[0]}{then[1]}")
    _run(exp, workdir, 2, *first)
    summary = _run(exp, workdir, 4, *then)
    assert summary["step"] == 4 and all(np.isfinite(v) for _, v in _losses(workdir))
    # every logged metric is a number (a GAN's d_loss and g_loss; no "loss": null)
    assert summary["train"] and all(np.isfinite(v) for v in summary["train"].values()), summary["train"]
    if first == ("jit", 1):
      assert _losses(workdir) == _losses(straight)
    else:
      np.testing.assert_allclose([v for _, v in _losses(workdir)], [v for _, v in _losses(straight)], rtol=2e-4)
  from genjax import evaluate, sample

  out = tmp_path / ("s.txt" if name == "gpt" else "s.png")
  if name != "classifier":
    sample.main(["--workdir", straight, "--num", "2", "--out", str(out)])
    assert out.exists() and out.stat().st_size > 0
  if name == "gan":  # no evaluation of its own: sample metrics in a digits classifier trained here
    net = str(tmp_path / "classifier")
    _run(experiments(text_export)["classifier"], net, 2, "jit", 1)
    evaluate.main(
      [
        "--workdir",
        straight,
        "--metrics",
        "fd,kid,pr",
        "--num_samples",
        "16",
        "--keep",
        "16",
        "--feature_net",
        "classifier_digits",
        "--classifier_dir",
        net,
        "--cache_dir",
        str(tmp_path),
        "--batch_size",
        "8",
        "--no_log",
      ]
    )
  else:
    evaluate.main(["--workdir", straight, "--max_examples", "4", "--batch_size", "8", "--no_log"])
  record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert record["step"] == 4 and record["metrics"]
