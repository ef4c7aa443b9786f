"""Configs: overrides are typed, unknown keys name the closest, impossible values say the fix."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genjax import config as config_lib
from genjax.config import ConfigError, Experiment


@dataclasses.dataclass(frozen=True)
class ToyModel:
  width: int = 8
  kind: str = "mlp"


def exp(**train):
  return Experiment(model=ToyModel(), train=config_lib.Train(**train))


def test_override_converts_to_field_types():
  e = config_lib.apply_overrides(
    exp(),
    [
      "--config.train.steps=100",
      "--config.optim.learning_rate=3e-4",
      "--config.data.flip=true",
      "--config.optim.grad_clip_norm=1",
      "--config.optim.boundaries=10,20",
      "--config.model.width=16",
    ],
  )
  assert e.train.steps == 100 and isinstance(e.train.steps, int)
  assert e.optim.learning_rate == pytest.approx(3e-4)
  assert e.data.flip is True
  assert e.optim.grad_clip_norm == 1.0 and isinstance(e.optim.grad_clip_norm, float)
  assert e.optim.boundaries == (10, 20)
  assert e.model.width == 16
  assert exp().train.steps != 100  # the original is untouched (frozen, replaced)


def test_optional_accepts_none():
  e = config_lib.apply_overrides(exp(), {"optim.ema_decay": "0.999"})
  assert e.optim.ema_decay == 0.999
  assert config_lib.apply_overrides(e, {"optim.ema_decay": "None"}).optim.ema_decay is None


def test_unknown_key_names_closest():
  with pytest.raises(ConfigError, match=r"--config.train.stpes.*Did you mean steps"):
    config_lib.apply_overrides(exp(), ["--config.train.stpes=10"])
  with pytest.raises(ConfigError, match=r"Unknown config key --config.trian.*Did you mean train"):
    config_lib.apply_overrides(exp(), ["--config.trian.steps=10"])


@pytest.mark.parametrize(
  "key,value,expected",
  [
    ("train.steps", "ten", "expected an integer"),
    ("train.steps", "1.5", "expected an integer"),
    ("train.steps", "1E310", "expected an integer"),  # reads as inf, which int() cannot take
    ("optim.learning_rate", "fast", "expected a number"),
    ("data.flip", "maybe", "expected a boolean"),
    ("parallel.mode", "tpu", "one of 'jit', 'fsdp', 'pmap'"),
    ("train", "3", "is a group of settings"),
  ],
)
def test_wrong_types_say_what_is_expected(key, value, expected):
  with pytest.raises(ConfigError, match=expected):
    config_lib.apply_overrides(exp(), {key: value})


def test_missing_value():
  with pytest.raises(ConfigError, match="has no value"):
    config_lib.apply_overrides(exp(), ["--config.train.steps"])


@pytest.mark.parametrize(
  "changes,expected",
  [
    ({"optim.learning_rate": "-0.1"}, "learning_rate = -0.1 must be > 0"),
    ({"train.steps": "0"}, "train.steps = 0 must be a positive integer"),
    ({"train.batch_size": "-4"}, "batch_size = -4 must be a positive"),
    ({"optim.ema_decay": "1.5"}, "ema_decay"),
    ({"optim.boundaries": "10,20", "optim.scales": "0.1"}, "same length"),
    ({"optim.name": "muon", "optim.muon_learning_rate": "-0.02"}, "muon_learning_rate = -0.02 must be > 0"),
    ({"optim.muon_momentum": "1.0"}, r"muon_momentum = 1.0 must lie in \[0, 1\)"),
    ({"optim.muon_ns_steps": "0"}, "muon_ns_steps = 0 must be a positive"),
    # 32-bit seeds: 2**32 would give the keys of seed 0
    ({"train.seed": str(2**32)}, r"train.seed = 4294967296 must be an integer from 0 to 4294967295"),
    ({"parallel.cpu_devices": "100000"}, "cpu_devices = 100000 must be a positive number of CPU devices, at most 4096"),
  ],
)
def test_impossible_values(changes, expected):
  with pytest.raises(ConfigError, match=expected):
    config_lib.validate(config_lib.apply_overrides(exp(), changes))


def test_batch_must_divide_over_devices():
  from genjax.core.placement import place

  eight = place(config_lib.Parallel(num_devices=8))
  with pytest.raises(ConfigError, match=r"batch_size = 100 does not divide over 8 devices.*batch_size=104 or 96"):
    eight.check_batches(100, 96)
  with pytest.raises(ConfigError, match=r"eval.batch_size = 100 does not divide over 8 devices"):
    eight.check_batches(96, 100)
  eight.check_batches(96, 96)
  # a model axis of 2 leaves 4 ways to split the batch
  place(config_lib.Parallel(num_devices=8, model_parallel=2)).check_batches(100, 100)


def test_type_check_of_config_files():
  bad = dataclasses.replace(exp(), train=config_lib.Train(steps="100"))
  with pytest.raises(ConfigError, match=r"train.steps = '100' has type str; expected int"):
    config_lib.validate(bad)


def test_config_file_with_argument(tmp_path):
  path = tmp_path / "exp.py"
  path.write_text(
    "import dataclasses\nfrom genjax.config import Experiment, Train\n"
    "@dataclasses.dataclass(frozen=True)\nclass M:\n  width: int = 1\n"
    "def get_config(arg=None):\n  return Experiment(name=arg or 'plain', model=M(), train=Train(steps=7))\n"
  )
  assert config_lib.load_config_file(str(path)).name == "plain"
  assert config_lib.load_config_file(f"{path}:small").name == "small"
  with pytest.raises(ConfigError, match="does not exist"):
    config_lib.load_config_file(str(tmp_path / "nope.py"))


def test_an_argument_a_config_file_never_reads_is_refused(tmp_path):
  """experiments/default.py:bogus trained the default experiment: a get_config that never reads its
  argument (`del arg`), or takes none, refuses ':ARG' instead of ignoring it."""
  body = "import dataclasses\nfrom genjax.config import Experiment\n@dataclasses.dataclass(frozen=True)\nclass M:\n  w: int = 1\n"
  ignores = tmp_path / "ignores.py"
  ignores.write_text(body + "def get_config(arg=None):\n  del arg\n  return Experiment(model=M())\n")
  none = tmp_path / "none.py"
  none.write_text(body + "def get_config():\n  return Experiment(model=M())\n")
  for path in (ignores, none):
    assert config_lib.load_config_file(str(path)).name == "default"  # without ':ARG' it loads
    with pytest.raises(ConfigError, match=f"{path} takes no argument after ':'.*'bogus'"):
      config_lib.load_config_file(f"{path}:bogus")
  with pytest.raises(ConfigError, match="default.py takes no argument after ':', got 'bogus'"):
    config_lib.load_config_file("experiments/default.py:bogus")
  with pytest.raises(ConfigError, match="ddpm_cifar10.py takes no argument after ':' .its get_config never reads one"):
    config_lib.load_config_file("experiments/ddpm_cifar10.py:bogus")


def test_a_diffusion_without_timesteps_is_refused():
  from genjax.data.info import DataInfo
  from genjax.families import diffusion

  info = DataInfo(name="digits", kind="image", shape=(8, 8, 1), num_classes=10)
  cfg = diffusion.Config(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=())
  diffusion.check_config(cfg, info)
  with pytest.raises(ConfigError, match="timesteps = 0 must be a positive number of diffusion steps"):
    diffusion.check_config(dataclasses.replace(cfg, timesteps=0), info)


def test_json_round_trip_and_diff():
  e = config_lib.apply_overrides(exp(), {"optim.boundaries": "5,9", "model.width": "3"})
  data = json.loads(config_lib.to_json(e))
  back = config_lib.from_dict(data, {"vae": ToyModel})
  assert back == e
  assert config_lib.diff(e, config_lib.apply_overrides(e, {"train.seed": "4"})) == ["train.seed"]


KEYS = [
  "train.steps",
  "train.batch_size",
  "optim.learning_rate",
  "data.flip",
  "parallel.mode",
  "optim.ema_decay",
  "optim.boundaries",
  "model.width",
  "train",
  "nope",
  "train.nope",
  "data.name",
]


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.sampled_from(KEYS), st.text(max_size=20)), value=st.text(max_size=20))
def test_random_overrides_never_crash_unclearly(key, value):
  """Any override string either applies with the field's type or raises ConfigError."""
  try:
    e = config_lib.apply_overrides(exp(), {key: value})
  except ConfigError as err:
    assert str(err)
    return
  field_value = e
  for part in key.split("."):
    field_value = getattr(field_value, part)
  hints = {
    "train.steps": int,
    "train.batch_size": int,
    "optim.learning_rate": float,
    "data.flip": bool,
    "parallel.mode": str,
    "model.width": int,
    "data.name": str,
    "optim.boundaries": tuple,
  }
  if key in hints:
    assert isinstance(field_value, hints[key])


@pytest.mark.parametrize(
  "key,value",
  [("optim.learning_rate", "nan"), ("optim.learning_rate", "inf"), ("model.width", "7"), ("optim.scales", "0.1,nan")],
)
def test_non_finite_numbers_are_refused(key, value):
  e = config_lib.apply_overrides(
    exp(), {key: value, **({"optim.boundaries": "10,20"} if key == "optim.scales" else {})}
  )
  if key == "model.width":
    assert config_lib.validate(e) is e
    return
  with pytest.raises(ConfigError, match="must be a finite number"):
    config_lib.validate(e)


def test_a_shortened_cosine_run_is_told_which_flag_fixes_its_warmup():
  exp = config_lib.load_config_file("experiments/gpt_shakespeare_char.py:cpu")
  exp = config_lib.apply_overrides(exp, ["--config.train.steps=100"])
  with pytest.raises(ConfigError) as e:
    config_lib.validate(exp)
  text = " ".join(str(e.value).split())
  assert "config.optim.warmup_steps = 100 must be smaller than config.train.steps = 100" in text
  assert "--config.optim.warmup_steps=10" in text
  fixed = config_lib.apply_overrides(exp, ["--config.optim.warmup_steps=10"])
  assert config_lib.validate(fixed).optim.warmup_steps == 10


def test_train_list_names_every_experiment_file_with_its_first_paragraph(capsys):
  import glob
  import os

  from genjax import train

  train.main(["--list"])
  out = capsys.readouterr().out
  files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(train.EXPERIMENTS_DIR, "*.py")))
  assert files and all(f"experiments/{name}" in out for name in files)
  assert "Class-conditional flow matching (rectified flow) on MNIST" in out
  rows = dict(train.list_experiments())
  assert rows["default.py"].startswith("The default experiment: a VAE")
  assert all(len(line) <= 110 for line in rows.values())
