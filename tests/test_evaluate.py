"""python -m genjax.evaluate: clear errors, and the whole path on the bundled 8x8 digits
(a few-step classifier as the feature network, a few-step VAE as the model)."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
  return subprocess.run(
    [sys.executable, "-m", "genjax.evaluate", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
  )


def assert_one_paragraph_error(result, *words):
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  assert result.stderr.startswith("error: ")
  flat = " ".join(result.stderr.split())  # wrapped to the terminal: a phrase may span lines
  for word in words:
    assert word in flat, (word, result.stderr)


def test_missing_workdir_is_a_clear_error(tmp_path):
  result = run_cli("--workdir", str(tmp_path / "nowhere"))
  assert_one_paragraph_error(result, "does not exist", "genjax.train")


def test_unknown_metric_is_a_clear_error(tmp_path):
  result = run_cli("--workdir", str(tmp_path), "--metrics", "fd,fidd")
  assert_one_paragraph_error(result, "'fidd'", "did you mean fid")


def test_folder_without_a_run_is_a_clear_error(tmp_path):
  result = run_cli("--workdir", str(tmp_path))
  assert_one_paragraph_error(result, "config.json")


def _config(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _quick(exp, steps):
  return dataclasses.replace(
    exp,
    optim=dataclasses.replace(exp.optim, warmup_steps=2),
    train=dataclasses.replace(
      exp.train,
      steps=steps,
      batch_size=64,
      eval_every=steps,
      checkpoint_every=steps,
      log_every=steps,
      progress=False,
      async_checkpoints=False,
    ),
    eval=dataclasses.replace(exp.eval, num_batches=1, batch_size=64, num_samples=4),
  )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  from genjax.trainer import loop

  root = tmp_path_factory.mktemp("runs")
  classifier = _quick(_config("classifier_mnist").get_config("digits"), 40)
  vae = _quick(_config("default").get_config(), 20)
  vae = dataclasses.replace(vae, model=dataclasses.replace(vae.model, eval_samples=10, eval_chunk=10))
  loop.train(classifier, str(root / "classifier"))  # no samples: the loop writes no grid
  loop.train(vae, str(root / "vae"))
  return root


def run_main(capsys, *args, stderr=None):
  """The JSON record genjax.evaluate prints for `args` (its stderr appended to `stderr` if given)."""
  from genjax import evaluate

  evaluate.main(list(args))
  captured = capsys.readouterr()
  if stderr is not None:
    stderr.append(captured.err)
  return json.loads(captured.out.strip().splitlines()[-1])


@pytest.mark.slow
def test_family_evaluation_of_the_classifier_is_its_test_accuracy(runs, capsys):
  from genjax import data
  from genjax.config import Data
  from genjax.metrics import features

  stderr = []
  record = run_main(capsys, "--workdir", str(runs / "classifier"), stderr=stderr)
  test = next(data.load(Data(name="digits"), "test").eval_batches(1000))
  n = int(test["mask"].sum())
  net = features.get("classifier_digits", classifier_dir=str(runs / "classifier"))
  _, logits = net.apply(test["image"][:n])
  want = np.mean(np.argmax(logits, -1) == test["label"][:n])
  assert record["metrics"]["num_examples"] == n == 297
  assert record["metrics"]["accuracy"] == pytest.approx(want, abs=1e-9)
  assert record["metrics"]["accuracy"] > 0.3  # far above chance (0.1) after 40 steps
  # The evaluation's FLOPs (XLA's count) beside the matmul rate measured on the spot, in the JSON and on stderr.
  compute = record["compute"]
  assert compute["flops"] > 0 and "flops" not in record["metrics"]
  # The JSON's seconds are rounded to the millisecond, the rate is not: the rate's time is within
  # half a millisecond of them, whatever the evaluation took (a relative bound failed on a 0.3 s run).
  assert compute["flops"] / compute["flop_per_s"] == pytest.approx(compute["seconds"], abs=0.0005 + 1e-9)
  assert compute["matmul_bound_seconds"] == pytest.approx(
    compute["flops"] / compute["matmul_flop_per_s"], abs=0.0005 + 1e-9
  )
  assert f"evaluation: {compute['flops']:.3g} FLOP in" in stderr[0]
  with open(runs / "classifier" / "eval.jsonl") as f:
    assert json.loads(f.readlines()[-1]) == record


@pytest.mark.slow
def test_max_examples_evaluates_the_first_n_examples(runs, capsys):
  from genjax import data
  from genjax.config import Data
  from genjax.metrics import features

  # 150 of the 297 test digits, in batches of 64: the cut falls inside the third batch.
  record = run_main(
    capsys, "--workdir", str(runs / "classifier"), "--max_examples", "150", "--batch_size", "64", "--no_log"
  )
  test = next(data.load(Data(name="digits"), "test").eval_batches(1000))
  net = features.get("classifier_digits", classifier_dir=str(runs / "classifier"))
  _, logits = net.apply(test["image"][:150])
  assert record["metrics"]["num_examples"] == 150
  assert record["metrics"]["accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == test["label"][:150]), abs=1e-9)


def test_max_examples_bounds_the_work_not_only_the_mean(runs, capsys, monkeypatch):
  """--max_examples 5 with --batch_size 64: the evaluation runs one batch of 5 examples, not a
  batch of 64 with 59 masked out (what made `--max_examples 8` on a diffusion bound take the
  time of 100 images)."""
  from genjax.data import datasets

  seen = []
  first_examples = datasets.first_examples

  def spy(batches, limit):
    for batch in first_examples(batches, limit):
      seen.append(len(batch["image"]))
      yield batch

  monkeypatch.setattr(datasets, "first_examples", spy)
  record = run_main(
    capsys, "--workdir", str(runs / "classifier"), "--max_examples", "5", "--batch_size", "64", "--no_log"
  )
  assert record["metrics"]["num_examples"] == 5 and seen == [5]


def test_max_examples_must_be_positive(tmp_path):
  assert_one_paragraph_error(run_cli("--workdir", str(tmp_path), "--max_examples", "0"), "--max_examples=0")


@pytest.mark.slow
def test_sample_metrics_of_a_vae_against_cached_reference_stats(runs, capsys, tmp_path):
  from genjax.config import Data
  from genjax.metrics import features, frechet, reference_stats

  args = [
    "--workdir",
    str(runs / "vae"),
    "--metrics",
    "fd,kid,pr,is",
    "--feature_net",
    "classifier_digits",
    "--classifier_dir",
    str(runs / "classifier"),
    "--num_samples",
    "150",
    "--keep",
    "150",
    "--batch_size",
    "50",
    "--cache_dir",
    str(tmp_path),
  ]
  record = run_main(capsys, *args)
  metrics = record["metrics"]
  assert set(metrics) == {
    "fd",
    "kid",
    "kid_std",
    "precision",
    "recall",
    "is",
    "is_std",
    "class_fractions",
    "class_min_fraction",
  }
  assert len(metrics["class_fractions"]) == 10 and abs(sum(metrics["class_fractions"]) - 1) < 1e-3
  assert (
    metrics["class_min_fraction"] == min(metrics["class_fractions"])
    or abs(metrics["class_min_fraction"] - min(metrics["class_fractions"])) < 1e-4
  )
  assert metrics["fd"] > 0 and 1.0 <= metrics["is"] <= 10.0
  assert 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1
  assert record["num_samples"] == 150 and record["reference"] == "digits/train"
  cache = reference_stats.cache_path(
    reference_stats.source_key(Data(name="digits"), "train"), "classifier_digits", str(tmp_path)
  )
  assert os.path.exists(cache) and record["reference_count"] == 1500
  # The cached statistics are those of the data, and the result is reproducible from the cache.
  net = features.get("classifier_digits", classifier_dir=str(runs / "classifier"))
  ref = reference_stats.load(cache)
  direct = reference_stats.compute(
    __import__("genjax.data", fromlist=["load"]).load(Data(name="digits"), "train").eval_batches(256), net, keep=150
  )
  np.testing.assert_allclose(ref.mean, direct.mean, rtol=1e-6, atol=1e-9)
  assert frechet.frechet_distance(ref.mean, ref.cov, direct.mean, direct.cov) < 1e-6
  mtime = os.path.getmtime(cache)
  again = run_main(capsys, *args)
  assert os.path.getmtime(cache) == mtime and again["metrics"] == metrics
  with open(runs / "vae" / "eval.jsonl") as f:
    assert len(f.readlines()) == 2


@pytest.mark.slow
def test_sample_metrics_refuse_a_classifier_run(runs, capsys):
  from genjax import evaluate

  with pytest.raises(SystemExit) as exit_:
    evaluate.main(["--workdir", str(runs / "classifier"), "--metrics", "fd"])
  assert exit_.value.code != 0
  assert "not a generative model" in capsys.readouterr().err


def test_the_loops_eval_and_evaluate_take_one_mean_over_a_padded_last_batch(tmp_path, capsys):
  """A GPT on a text file whose test split is 5 windows of 16 tokens, evaluated in batches of 4:
  the second batch holds 1 real window. The loop's logged eval and genjax.evaluate both weigh each
  batch by its real examples, so they agree; an average of the two batch means would not."""
  from genjax import config as C
  from genjax.families.autoregressive import GPTConfig
  from genjax.trainer import loop

  text = tmp_path / "corpus.txt"
  text.write_text("".join(chr(97 + (i * 7) % 26) for i in range(850)))  # test split: the last 85 characters
  block = 16
  exp = C.Experiment(
    name="one-mean",
    family="autoregressive",
    model=GPTConfig(num_layers=1, num_heads=2, width=16, dropout=0.0),
    data=C.Data(name="text", path=str(text), block_size=block, holdout=0.1),
    optim=C.Optim(learning_rate=1e-2),
    train=C.Train(steps=2, batch_size=4, log_every=1, eval_every=2, checkpoint_every=2, progress=False),
    parallel=C.Parallel(num_devices=1),
    eval=C.Eval(num_batches=10, batch_size=4, num_samples=1, sample_length=4),
  )
  summary = loop.train(exp, str(tmp_path / "run"))
  result = run_main(capsys, "--workdir", str(tmp_path / "run"), "--no_log")
  assert result["metrics"]["tokens"] == 5 * block  # five windows, two batches, the second padded
  assert summary["eval"]["eval_loss"] == pytest.approx(result["metrics"]["loss"], rel=1e-6)
