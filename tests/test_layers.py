"""The import graph runs one way: config <- core (toolkit) <- nn <- families <- trainer <- perf
(the measuring tools) <- entry points, and no entry point imports another. A module that imports a
layer above it fails here, with the offending import named."""

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "genjax")

# package (folder or module under genjax/) -> genjax packages it must not import
ENTRY_POINTS = (
  "genjax.train",
  "genjax.sample",
  "genjax.evaluate",
  "genjax.bench",
  "genjax.profile",
  "genjax.reproduce",
)

FORBIDDEN = {
  "config.py": ("genjax.",),
  "paths.py": ("genjax.",),
  "core": (
    "genjax.families",
    "genjax.trainer",
    "genjax.nn",
    "genjax.metrics",
    "genjax.data",
    "genjax.train",
    "genjax.sample",
    "genjax.evaluate",
    "genjax.bench",
    "genjax.perf",
  ),
  "nn": ("genjax.families", "genjax.trainer", "genjax.metrics", "genjax.data", "genjax.train", "genjax.perf"),
  "data": ("genjax.families", "genjax.trainer", "genjax.core", "genjax.nn", "genjax.metrics", "genjax.perf"),
  "families": (
    "genjax.trainer",
    "genjax.train",
    "genjax.sample",
    "genjax.evaluate",
    "genjax.bench",
    "genjax.metrics",
    "genjax.perf",
  ),
  "trainer": ("genjax.sample", "genjax.evaluate", "genjax.bench", "genjax.train", "genjax.perf"),
  "metrics": ("genjax.perf",),
  # the measuring tools: what the bench, profile and reproduce commands call, never the commands
  "perf": ENTRY_POINTS,
  "bench.py": ("genjax.profile", "genjax.reproduce"),
  "profile.py": ("genjax.bench", "genjax.reproduce"),
  "reproduce.py": ("genjax.bench", "genjax.profile"),
}


def _imports(path):
  tree = ast.parse(open(path).read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from ((node.lineno, a.name) for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      # `from genjax import bench` imports genjax.bench: name the module with each imported name
      yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)


def test_no_import_runs_back_up_the_layers():
  bad = []
  for part, forbidden in FORBIDDEN.items():
    where = os.path.join(ROOT, part)
    files = (
      [where]
      if where.endswith(".py")
      else [os.path.join(d, f) for d, _, fs in os.walk(where) for f in fs if f.endswith(".py")]
    )
    assert files, part
    for path in files:
      for line, name in _imports(path):
        if any(
          name == f.rstrip(".") or name.startswith(f if f.endswith(".") else f + ".") or name == f for f in forbidden
        ):
          bad.append(f"{os.path.relpath(path, ROOT)}:{line} imports {name}")
  assert not bad, "imports that run back up the layers:\n" + "\n".join(bad)


def test_no_family_names_a_device_axis():
  """Families write for the global batch; only genjax.core.parallel knows pmap and axis names."""
  bad = []
  for d, _, fs in os.walk(os.path.join(ROOT, "families")):
    for f in fs:
      if f.endswith(".py"):
        text = open(os.path.join(d, f)).read()
        bad += [f"{f}: {word}" for word in ("pmap", "axis_name", "axis_index") if word in text]
  assert not bad, bad


def _module_imports(path, modules):
  """The modules of `package` that the module at `path` imports, function-level imports included
  (`from genjax.data import sources` imports genjax.data.sources, `from genjax.data import load`
  the package itself)."""
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names if a.name in modules)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
      yield from (
        f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names
      )


def test_no_import_circle_in_data():
  """No module of genjax.data imports one that imports it back, directly or through others."""
  folder = os.path.join(ROOT, "data")
  paths = {
    "genjax.data" if f == "__init__.py" else f"genjax.data.{f[:-3]}": os.path.join(folder, f)
    for f in os.listdir(folder)
    if f.endswith(".py")
  }
  edges = {m: set(_module_imports(p, paths)) - {m} for m, p in paths.items()}

  def circle(start, path):
    for nxt in sorted(edges[path[-1]]):
      if nxt == start:
        return path + [start]
      if nxt not in path and (found := circle(start, path + [nxt])):
        return found
    return None

  circles = [c for c in (circle(m, [m]) for m in sorted(edges)) if c]
  assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)
