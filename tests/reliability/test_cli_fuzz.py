"""Random command lines thrown at the training command's parser: whatever the strings, the
result is an experiment that passed validation or one clean error (exit 2), never a crash."""

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genjax import config as config_lib
from genjax import train as train_main
from tests.trainer.helpers import small_experiment


def _leaf_keys(obj, prefix=""):
  """Every dotted field of the experiment, model fields included: the real override targets."""
  keys = []
  for field in dataclasses.fields(obj):
    value = getattr(obj, field.name)
    key = f"{prefix}{field.name}"
    keys += _leaf_keys(value, key + ".") if dataclasses.is_dataclass(value) else [key]
  return keys


KEYS = _leaf_keys(small_experiment())
VALUES = st.one_of(
  st.text(max_size=12),
  st.integers(-(10**12), 10**12).map(str),
  st.floats(allow_nan=True, allow_infinity=True).map(repr),
  st.sampled_from(
    ["", "None", "true", "()", "(1,", "[1, 2]", "1e999", "-0", "jit", "digits", "'", '"', "=", "--", "(8,)", "float32"]
  ),
)
ARG = st.one_of(
  st.builds(lambda k, v: f"--config.{k}={v}", st.sampled_from(KEYS), VALUES),
  st.builds(lambda k, v: f"--config.{k}={v}", st.text(max_size=15), VALUES),
  st.builds(lambda k: f"--config.{k}", st.sampled_from(KEYS)),
  st.text(max_size=15),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(ARG, max_size=4))
def test_random_command_lines_validate_or_fail_with_one_clean_error(argv, capsys):
  base = small_experiment()
  try:
    args, overrides = train_main.parse(["--workdir", "unused", *argv])
    exp = config_lib.apply_overrides(base, overrides)
    config_lib.validate(exp)
  except SystemExit as stop:
    assert stop.code == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    return
  except config_lib.ConfigError as e:  # what the command turns into "error: ..." and exit 2
    assert str(e).strip()
    return
  assert isinstance(exp, config_lib.Experiment)  # a command line that passes is a valid experiment
