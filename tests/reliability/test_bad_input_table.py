"""A table of plainly wrong inputs, every family and every entry point: each gets one paragraph
naming the problem and a non-zero exit, never a traceback, and leaves an existing run untouched."""

import hashlib
import json
import os

import pytest

from tests.reliability.test_bad_input import _fails_cleanly
from tests.test_stack import text_export  # noqa: F401 - the fixture

CONFIG = """
import dataclasses
from genjax import config as C
from tests.test_stack import experiments

def get_config(arg=None):
  exp = experiments({text_dir!r})[{name!r}]
  return dataclasses.replace(exp, name="bad-input", train=C.Train(steps=2, batch_size=8, log_every=1, eval_every=2,
                             checkpoint_every=2, progress=False), eval=C.Eval(num_batches=1, batch_size=8, num_samples=2))
"""

# case -> (family config, extra arguments, what the message must name)
TRAIN = {
  "vae without latents": ("vae", ["--config.model.latents="], "latents"),
  "vae bernoulli on grey images": ("vae", ["--config.model.likelihood=bernoulli"], "binarize"),
  "gan penalty with batchnorm": ("gan", ["--config.model.gp_weight=10"], "d_norm"),
  "gan pack not dividing the batch": ("gan", ["--config.model.pack=3"], "multiple"),
  "gan dcgan_mnist unconditional": ("gan", ["--config.model.arch=dcgan_mnist"], "conditional"),
  "gan real labels unconditional": ("gan", ["--config.model.fake_labels=real"], "conditional"),
  "gpt heads not dividing width": ("gpt", ["--config.model.width=15"], "divisible"),
  "gpt vocabulary too small": ("gpt", ["--config.model.vocab_size=3"], "vocab_size"),
  "gpt on images": (
    "gpt",
    ["--config.data.name=digits", "--config.data.train_split=train", "--config.data.eval_split=test"],
    "text",
  ),
  "pixelcnn on grey images": ("pixelcnn", ["--config.data.binarize=none"], "binary"),
  "pixelcnn even kernel": ("pixelcnn", ["--config.model.kernel_size=4"], "odd"),
  "diffusion channels not for groupnorm": ("diffusion", ["--config.model.ch=48"], "multiple of 32"),
  "diffusion too many halvings": ("diffusion", ["--config.model.ch_mult=1,2,2,2,2"], "ch_mult"),
  "diffusion guidance unconditional": ("diffusion", ["--config.model.guidance_scale=2"], "class_conditional"),
  "diffusion label dropout above one": ("diffusion", ["--config.model.label_dropout=1.5"], "label_dropout"),
  "diffusion unknown sampler": ("diffusion", ["--config.model.sampler=plms"], "sampler"),
  "classifier on text": ("gpt", ["--config.family=classifier"], "family"),
  "family and model disagree": ("vae", ["--config.family=gan"], "family"),
  "unknown family": ("vae", ["--config.family=flow"], "Unknown family"),
  "unknown dataset": ("vae", ["--config.data.name=cifar100"], "Unknown dataset"),
  "unknown split": ("vae", ["--config.data.eval_split=tset"], "splits"),
  "image folder missing": (
    "vae",
    ["--config.data.name=folder", "--config.data.path=/nonexistent/genjax-images"],
    "does not exist",
  ),
  "image folder not given": ("vae", ["--config.data.name=folder"], "data.path"),
  "text file missing": (
    "gpt",
    ["--config.data.name=text", "--config.data.path=/nonexistent/genjax.txt"],
    "does not exist",
  ),
  "unknown tfds name": ("vae", ["--config.data.name=tfds:mnistt"], "Did you mean mnist"),
  "holdout of one": ("vae", ["--config.data.holdout=1"], "holdout"),
  "bpe vocabulary below the bytes": (
    "gpt",
    ["--config.data.tokenizer=bpe", "--config.data.bpe_vocab_size=100"],
    "bpe_vocab_size",
  ),
  "negative seed": ("vae", ["--config.train.seed=-1"], "seed"),
  "more devices than exist": ("vae", ["--config.parallel.num_devices=64"], "devices exist"),
  "model axis not dividing the devices": ("vae", ["--config.parallel.model_parallel=3"], "model_parallel"),
  "model axis under pmap": ("vae", ["--config.parallel.mode=pmap", "--config.parallel.model_parallel=2"], "mesh"),
  "unknown parallel mode": ("vae", ["--config.parallel.mode=dp"], "parallel.mode"),
  "profile steps backwards": ("vae", ["--config.train.profile_steps=5,1"], "profile_steps"),
  "steps per call not dividing": ("vae", ["--config.train.steps_per_call=3"], "multiple of"),
  "ema decay of one": ("vae", ["--config.optim.ema_decay=1.0"], "ema_decay"),
  "warmup longer than the run": (
    "vae",
    ["--config.optim.schedule=warmup_cosine", "--config.optim.warmup_steps=5"],
    "warmup_steps",
  ),
  "batch not dividing the devices": ("vae", ["--config.train.batch_size=12"], "divide"),
  # Sizes and ranges (#33): each a paragraph where XLA or a tokenizer aborted, or a value was ignored.
  "model axis splitting nothing": ("vae", ["--config.parallel.model_parallel=2"], "splits none of the"),
  "seed beyond 32 bits": ("vae", ["--config.train.seed=4294967296"], "from 0 to 4294967295"),
  "bpe vocabulary of a billion": (
    "gpt",
    ["--config.data.tokenizer=bpe", "--config.data.bpe_vocab_size=1000000000"],
    "bpe_vocab_size = 1000000000 must lie in",
  ),
  "diffusion without timesteps": ("diffusion", ["--config.model.timesteps=0"], "timesteps = 0"),
  "simulated devices beyond reason": ("vae", ["--config.parallel.cpu_devices=100000"], "at most 4096"),
  "eval samples beyond memory": ("vae", ["--config.eval.num_samples=1000000000000"], "--config.eval.num_samples"),
}


def _write(tmp_path, name, text_dir):
  path = tmp_path / f"{name}_config.py"
  path.write_text(CONFIG.format(text_dir=text_dir, name=name))
  return str(path)


@pytest.mark.parametrize("case", sorted(TRAIN))
def test_train_refuses_bad_values_of_every_family(case, text_export, tmp_path, capsys, monkeypatch):  # noqa: F811
  family, extra, needle = TRAIN[case]
  workdir = tmp_path / "w"
  _fails_cleanly(
    "train",
    ["--config", _write(tmp_path, family, text_export), "--workdir", str(workdir), *extra],
    capsys,
    monkeypatch,
    needle,
  )
  assert not (workdir / "checkpoints").exists()


BROKEN_FILES = {
  "syntax error": ("def get_config(arg=None):\n  return (\n", "broken_file.py:"),
  "name error at import": ("import genjax\nfrom genjax import nothing_here\n", "ImportError"),
  "no get_config": ("x = 1\n", "get_config"),
  "returns something else": ("def get_config(arg=None):\n  return {'steps': 3}\n", "expected genjax.config.Experiment"),
  "raises on its argument": (
    "def get_config(arg='a'):\n  raise ValueError(f'takes a or b, got {arg!r}')\n",
    "takes a or b",
  ),
  "never reads its argument": (
    "from genjax.config import Experiment\ndef get_config(arg=None):\n  del arg\n  return Experiment()\n",
    "takes no argument after ':' (its get_config never reads one; got 'c')",
  ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_broken_config_files_name_the_file_and_line(case, tmp_path, capsys, monkeypatch):
  text, needle = BROKEN_FILES[case]
  path = tmp_path / "broken_file.py"
  path.write_text(text)
  spec = str(path) + (":c" if "argument" in case else "")
  _fails_cleanly("train", ["--config", spec, "--workdir", str(tmp_path / "w")], capsys, monkeypatch, needle)


def test_arguments_configs_do_not_take(tmp_path, capsys, monkeypatch):
  _fails_cleanly(
    "train",
    ["--config", "experiments/gpt2_small.py:medium", "--workdir", str(tmp_path / "w")],
    capsys,
    monkeypatch,
    "no argument",
  )
  _fails_cleanly(
    "train",
    ["--config", "experiments/vae_binarized_mnist.py:vea", "--workdir", str(tmp_path / "w")],
    capsys,
    monkeypatch,
    "vae",
  )
  _fails_cleanly(  # the default config ignored its argument and trained
    "train",
    ["--config", "experiments/default.py:bogus", "--workdir", str(tmp_path / "w")],
    capsys,
    monkeypatch,
    "default.py takes no argument",
  )
  assert not (tmp_path / "w").exists()


# The measuring commands' numbers: each a paragraph and exit 2 before anything is measured or written.
DEFAULT = "experiments/default.py"
OTHER_COMMANDS = {
  "profile of no calls": ("profile", ["--config", DEFAULT, "--calls", "0"], "--calls=0"),
  "profile batch of zero": ("profile", ["--config", DEFAULT, "--batch", "0"], "--batch=0"),
  "profile steps per call of zero": ("profile", ["--config", DEFAULT, "--steps_per_call", "0"], "--steps_per_call=0"),
  "profile batch beyond memory": (
    "profile",
    ["--config", DEFAULT, "--batch", "1000000000000"],
    "1,000,000,000,000 training examples per call of shape (8, 8, 1)",
  ),
  "profile top negative": ("profile", ["--config", DEFAULT, "--top", "-1"], "--top=-1"),
  "reproduce without budget": ("reproduce", ["gpu", "--out", "{out}", "--budget_s", "0"], "--budget_s=0.0"),
  "reproduce budget not a number": ("reproduce", ["gpu", "--out", "{out}", "--budget_s", "nan"], "--budget_s=nan"),
  "bench two benchmarks at once": ("bench", ["--memory", "--decode"], "--memory and --decode are separate"),
  "bench memory configs without memory": ("bench", ["--memory_configs", "experiments/gpt2.py:medium"], "add --memory"),
  "bench memory of no config": ("bench", ["--memory", "--memory_configs", ","], "names no config"),
  "bench memory of an image model": ("bench", ["--memory", "--memory_configs", DEFAULT], "tokens"),
  "bench no rounds": ("bench", ["--nanogpt", "{out}", "--rounds", "0"], "--rounds=0"),
  "bench negative timing": ("bench", ["--min_time", "-1"], "--min_time=-1.0"),
}


@pytest.mark.parametrize("case", sorted(OTHER_COMMANDS))
def test_measuring_commands_refuse_sizes_that_cannot_work(case, tmp_path, capsys, monkeypatch):
  command, argv, needle = OTHER_COMMANDS[case]
  out = tmp_path / "out"
  _fails_cleanly(command, [a.format(out=out) for a in argv], capsys, monkeypatch, needle)
  assert not out.exists()


def _digest(folder) -> str:
  h = hashlib.sha256()
  for root, _, files in sorted(os.walk(folder)):
    for f in sorted(files):
      path = os.path.join(root, f)
      h.update(os.path.relpath(path, folder).encode() + open(path, "rb").read())
  return h.hexdigest()


@pytest.fixture(scope="module")
def trained(text_export, tmp_path_factory):  # noqa: F811
  """Two small trained runs (a VAE and the classifier) that rejected commands must not touch."""
  from genjax.train import main

  root = tmp_path_factory.mktemp("trained")
  runs = {}
  for family in ("vae", "classifier"):
    config = _write(root, family, text_export)
    runs[family] = str(root / family)
    main(["--config", config, "--workdir", runs[family]])
  return runs


SAMPLE = [
  (["--temperature", "0.5"], "not a sampling option"),
  (["--num_steps=ten"], "not a sampling option"),
  (["--seed", "-1"], "--seed"),
  (["--num", "0"], "--num"),
  (["--seed", str(2**32)], "--seed=4294967296 must be an integer from 0 to 4294967295"),
  # aborted inside XLA (exit 134) when the samples were allocated
  (["--num", "1000000000000"], "1,000,000,000,000 samples of shape (8, 8, 1) at once need at least", "--num"),
]
EVALUATE = [
  (["--metrics", "modes"], "modes counts"),
  (["--sampler", "ddim"], "sampling options are for --metrics"),
  (["--max_examples", "0"], "--max_examples"),
  (["--batch_size", "0"], "--batch_size"),
  (["--seed", "-3"], "--seed"),
  (["--batch_size", "-4"], "--batch_size=-4"),
  (["--batch_size", "1000000000000"], "1,000,000,000,000 examples of shape (8, 8, 1)", "--batch_size"),
  (
    ["--metrics", "fd", "--num_samples", "1000000000000", "--batch_size", "1000000000000"],
    "1,000,000,000,000 samples of shape",
    "--batch_size",
  ),
  (["--keep", "0"], "--keep=0"),
  # Overrides that change what the checkpoint holds: refused before any array is read, naming the
  # override (not the harmless one beside it); today's code took them for corruption and moved
  # every checkpoint to checkpoints_corrupt/.
  (["--config.model.hidden=(32,)"], "config.model.hidden=(32,) changes the parameters", "drop the override"),
  (
    ["--config.model.eval_samples=3", "--config.optim.ema_decay=0.999"],
    "error: config.optim.ema_decay=0.999 changes the EMA weights",
    "absent in the checkpoint",
  ),
]


def test_sample_and_evaluate_refuse_bad_flags_and_touch_nothing(trained, tmp_path, capsys, monkeypatch):
  before = {name: _digest(w) for name, w in trained.items()}
  out = str(tmp_path / "s.png")
  for argv, *needles in SAMPLE:
    _fails_cleanly("sample", ["--workdir", trained["vae"], "--out", out, *argv], capsys, monkeypatch, *needles)
  _fails_cleanly("sample", ["--workdir", trained["vae"], "--out", str(tmp_path / "s.txt")], capsys, monkeypatch, ".png")
  _fails_cleanly(
    "sample", ["--workdir", trained["classifier"], "--out", out], capsys, monkeypatch, "not a generative model"
  )
  for argv, *needles in EVALUATE:
    _fails_cleanly("evaluate", ["--workdir", trained["vae"], *argv], capsys, monkeypatch, *needles)
  _fails_cleanly(
    "evaluate", ["--workdir", trained["classifier"], "--metrics", "fd"], capsys, monkeypatch, "not a generative model"
  )
  # A rejected train command on an existing run: another experiment's config, a broken override.
  from genjax.trainer import workdir as workdir_lib

  config = trained["vae"] + "_again.py"
  open(config, "w").write(CONFIG.format(text_dir="", name="vae"))
  _fails_cleanly(
    "train",
    ["--config", config, "--workdir", trained["vae"], "--config.model.hidden=32"],
    capsys,
    monkeypatch,
    "different experiment",
  )
  _fails_cleanly(
    "train", ["--config", config, "--workdir", trained["vae"], "--config.train.seed=-2"], capsys, monkeypatch, "seed"
  )
  assert {name: _digest(w) for name, w in trained.items()} == before
  assert workdir_lib.load_config(trained["vae"]).train.steps == 2


def test_a_corrupt_workdir_is_reported_and_kept(trained, tmp_path, capsys, monkeypatch):
  import shutil

  broken = str(tmp_path / "broken")
  shutil.copytree(trained["vae"], broken)
  with open(os.path.join(broken, "config.json"), "w") as f:
    f.write("{not json")
  before = _digest(broken)
  _fails_cleanly("sample", ["--workdir", broken, "--out", str(tmp_path / "s.png")], capsys, monkeypatch, "config.json")
  _fails_cleanly("evaluate", ["--workdir", broken], capsys, monkeypatch, "config.json")
  assert _digest(broken) == before
  json.loads(open(os.path.join(trained["vae"], "config.json")).read())  # the original is intact


def test_an_unreachable_bucket_is_one_paragraph_before_any_retry(trained, text_export, tmp_path, capsys, monkeypatch):  # noqa: F811
  """A workdir, a data.path or a sample --out in a bucket whose service does not answer (here a
  closed port as the emulator's address): the paragraph comes from one connection attempt (the
  storage client retried for about 40 s, and data.path gave its traceback), and nothing changed."""
  from tests.reliability.procs import free_port

  monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")  # nothing listens there
  monkeypatch.setenv("EPATH_USE_TF", "false")
  monkeypatch.delenv("HTTPS_PROXY", raising=False)
  monkeypatch.delenv("https_proxy", raising=False)
  before = {name: _digest(w) for name, w in trained.items()}
  said = "the storage service of gs://test-bucket, could not be reached within 5 s"
  config = _write(tmp_path, "vae", text_export)
  _fails_cleanly("train", ["--config", config, "--workdir", "gs://test-bucket/run"], capsys, monkeypatch, said)
  folder = ["--config.data.name=folder", "--config.data.path=gs://test-bucket/images"]
  workdir = tmp_path / "w"
  _fails_cleanly("train", ["--config", config, "--workdir", str(workdir), *folder], capsys, monkeypatch, said)
  assert not (workdir / "checkpoints").exists()
  out = "gs://test-bucket/samples/s.png"
  _fails_cleanly("sample", ["--workdir", trained["vae"], "--out", out], capsys, monkeypatch, "write --out", said)
  assert {name: _digest(w) for name, w in trained.items()} == before
