"""Every `python -m genjax.train` command that README.md and the experiment files' headers give
names a config that loads, takes its overrides and validates, as written (nothing is trained:
this is what the command does before JAX starts). Commands with placeholders (NAME, [:ARG], :M)
are templates and are skipped; the README's python blocks run in tests/test_readme.py."""

import ast
import glob
import os
import re
import shlex

from genjax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLACEHOLDER = re.compile(r"NAME|\[:|:ARG|:M\b|\.\.\.")


def documented_train_commands():
  """(where, command) of every train command in README.md and the experiments' docstrings, with
  backslash-continued lines joined and what follows `&&`, `|` or a comment cut off."""
  sources = {"README.md": open(os.path.join(ROOT, "README.md")).read()}
  for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py"))):
    sources[os.path.relpath(path, ROOT)] = ast.get_docstring(ast.parse(open(path).read())) or ""
  for where, text in sources.items():
    text = re.sub(r"\\\n\s*", " ", text)
    for match in re.finditer(r"python -m genjax\.train\b[^\n`|;&#)]*", text):
      yield where, match.group(0).strip()


def test_every_documented_train_command_loads_and_validates():
  checked, bad = 0, []
  for where, command in documented_train_commands():
    if PLACEHOLDER.search(command):
      continue
    try:
      tokens = shlex.split(command)
    except ValueError:  # a quote the extraction cut off at the end of a sentence
      tokens = command.split()
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
