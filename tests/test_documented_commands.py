"""Every `python -m genjax.train` command that README.md and the experiment files' headers give
names a config that loads, takes its overrides and validates, as written (nothing is trained:
this is what the command does before JAX starts); every other `python -m genjax.*` command they
give (sample, evaluate, bench, profile, data.prepare, ...) uses only flags its parser defines (or,
for sample and evaluate, a family's sampling options). Commands with placeholders (NAME, [:ARG],
:M) are templates and are skipped; the README's python blocks run in tests/test_readme.py."""

import ast
import glob
import os
import re
import shlex

from genjax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLACEHOLDER = re.compile(r"NAME|\[:|:ARG|:M\b|\.\.\.")


def documented_commands(module=r"train\b"):
  """(where, command) of every `python -m genjax.<module>` command in README.md and the
  experiments' docstrings, with backslash-continued lines joined and what follows `&&`, `|` or a
  comment cut off."""
  sources = {"README.md": open(os.path.join(ROOT, "README.md")).read()}
  for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py"))):
    sources[os.path.relpath(path, ROOT)] = ast.get_docstring(ast.parse(open(path).read())) or ""
  for where, text in sources.items():
    text = re.sub(r"\\\n\s*", " ", text)
    for match in re.finditer(r"python -m genjax\." + module + r"[^\n`|;&#)]*", text):
      yield where, match.group(0).strip()


def _tokens(command):
  try:
    return shlex.split(command)
  except ValueError:  # a quote the extraction cut off at the end of a sentence
    return command.split()


def test_every_documented_train_command_loads_and_validates():
  checked, bad = 0, []
  for where, command in documented_commands():
    if PLACEHOLDER.search(command):
      continue
    tokens = _tokens(command)
    spec = next((tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "--config"), "experiments/default.py")
    overrides = [t for t in tokens if t.startswith("--config.")]
    try:
      exp = config_lib.apply_overrides(config_lib.load_config_file(os.path.join(ROOT, spec)), overrides)
      config_lib.validate(exp)
    except config_lib.ConfigError as e:
      bad.append(f"{where}: {command}\n  {e}")
    checked += 1
  assert checked >= 25, f"only {checked} documented train commands found: the extraction broke"
  assert not bad, "documented commands that fail before training:\n" + "\n".join(bad)


class _Parsed(Exception):
  """Raised in place of parsing: carries the parser an entry point built."""

  def __init__(self, parser):
    self.parser = parser


def _parser_of(module_name, monkeypatch):
  """The argparse parser `python -m <module_name>` builds, caught as its main() first parses."""
  import argparse
  import importlib

  def catch(self, *args, **kwargs):
    raise _Parsed(self)

  with monkeypatch.context() as m:
    m.setattr(argparse.ArgumentParser, "parse_known_args", catch)
    m.setattr(argparse.ArgumentParser, "parse_args", catch)
    try:
      importlib.import_module(module_name).main([])
    except _Parsed as parsed:
      return parsed.parser
  raise AssertionError(f"{module_name}.main() parsed no arguments")


def test_every_documented_command_uses_only_flags_its_parser_knows(monkeypatch):
  import dataclasses

  from genjax import families

  family_options = {
    f"--{f.name}"
    for name in families.names()
    for cls in families.get(name).SAMPLE_OPTIONS.values()
    for f in dataclasses.fields(cls)
  }
  parsers, checked, bad = {}, 0, []
  for where, command in documented_commands(r"[a-z_.]+"):
    tokens = _tokens(command)
    module = tokens[2]
    if PLACEHOLDER.search(command) or module == "genjax.train":  # train: the test above
      continue
    if module not in parsers:
      parsers[module] = _parser_of(module, monkeypatch)
    flags = [t.split("=", 1)[0] for t in tokens[3:] if t.startswith("--") and not t.startswith("--config.")]
    known = set(parsers[module]._option_string_actions)
    if module in ("genjax.sample", "genjax.evaluate"):
      known |= family_options
    unknown = [f for f in flags if f not in known]
    if unknown:
      bad.append(f"{where}: {command}\n  unknown flags {unknown}")
    checked += 1
  assert checked >= 20 and len(parsers) >= 5, (
    f"only {checked} commands of {sorted(parsers)} found: the extraction broke"
  )
  assert not bad, "documented commands with flags their entry point does not define:\n" + "\n".join(bad)
