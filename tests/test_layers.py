"""The import graph runs one way: errors <- config <- core (toolkit) <- nn <- families <- trainer
<- perf (the measuring tools) <- entry points, and no entry point imports another; no module imports
one that imports it back. A module that imports a layer above it fails here, with the offending
import named. Every entry point catches genjax.errors.UserError and nothing broader."""

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
  "errors.py": ("genjax.",),
  # the bottom layer: nothing of genjax but its errors (ALLOWED)
  "config.py": ("genjax.",),
  "paths.py": ("genjax.",),
  "threefry.py": ("genjax.",),  # applied by cli.py with the XLA:CPU flags
  "cli.py": (
    "genjax.core",
    "genjax.nn",
    "genjax.data",
    "genjax.families",
    "genjax.trainer",
    "genjax.metrics",
    "genjax.perf",
  )
  + ENTRY_POINTS,
  "compile_cache.py": ("genjax.core", "genjax.nn", "genjax.data", "genjax.families", "genjax.trainer", "genjax.perf")
  + ENTRY_POINTS,
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


# every module may import these
ALLOWED = ("genjax.errors",)


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
        if not any(name == a or name.startswith(a + ".") for a in ALLOWED) and any(
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


def _modules(root=ROOT):
  """{module name: file} of every module of the package at `root`."""
  out = {}
  for d, _, fs in os.walk(root):
    for f in fs:
      if f.endswith(".py"):
        name = os.path.relpath(os.path.join(d, f), os.path.dirname(root))[:-3].replace(os.sep, ".")
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = os.path.join(d, f)
  return out


def _circles(root=ROOT):
  """Import circles among the modules of the package at `root` (function-level imports count: a
  circle through them is still a circle in the design), each as a list of module names."""
  modules = _modules(root)
  edges = {m: set(_module_imports(p, modules)) - {m} for m, p in modules.items()}
  done, circles = set(), []

  def visit(m, path):  # depth-first; a module reached again on the current path closes a circle
    if m in path:
      circles.append(path[path.index(m) :] + [m])
      return
    if m in done:
      return
    for nxt in sorted(edges[m]):
      visit(nxt, path + [m])
    done.add(m)

  for m in sorted(edges):
    visit(m, [])
  return circles


def test_no_import_circle_anywhere():
  """No module of genjax imports one that imports it back, directly or through others."""
  assert {"genjax.data.sources", "genjax.perf.benchmark", "genjax.metrics.features"} <= set(_modules())
  circles = _circles()
  assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_circle_finder_finds_one(tmp_path):
  """The check above is not vacuous: two modules that import each other are reported, also when
  one of the imports sits inside a function."""
  pkg = tmp_path / "genjax"
  (pkg / "a").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "a" / "__init__.py").write_text("")
  (pkg / "a" / "x.py").write_text("from genjax.a import y\n")
  (pkg / "a" / "y.py").write_text("def f():\n  from genjax.a import x\n")
  (pkg / "b.py").write_text("import genjax.a.x\n")
  assert _circles(str(pkg)) == [["genjax.a.x", "genjax.a.y", "genjax.a.x"]]


BROAD = {
  "Exception",
  "BaseException",
  "ValueError",
  "TypeError",
  "RuntimeError",
  "ArithmeticError",
  "KeyError",
  "NotImplementedError",
  "FileNotFoundError",
  "OSError",
  "AttributeError",
}


def test_entry_points_catch_only_user_errors():
  """Each command's main turns genjax.errors.UserError (and its subclasses) into one paragraph and
  lets anything else out as a traceback: a bug must not read as a user's mistake. Handlers that
  turn a store's own exceptions into a StorageError (genjax.paths.storage_error) are the one
  exception, and say so with a BLE001 note."""
  bad = []
  for module in (*ENTRY_POINTS, "genjax.data.export", "genjax.data.prepare", "genjax.metrics.reference_stats"):
    path = _modules()[module]
    text = open(path).read()
    lines = text.splitlines()
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, ast.ExceptHandler) and node.type is not None:
        names = {
          n.id if isinstance(n, ast.Name) else n.attr
          for n in ast.walk(node.type)
          if isinstance(n, (ast.Name, ast.Attribute))
        }
        body = ast.unparse(node)
        if names & BROAD and "storage_error" not in body and "BLE001" not in lines[node.lineno - 1]:
          bad.append(f"{module}:{node.lineno} catches {sorted(names & BROAD)}")
  assert not bad, "entry points that turn bugs into one-paragraph errors:\n" + "\n".join(bad)


def test_no_function_is_longer_than_sixty_lines():
  """A function that outgrows a screen is split (docstring and comments count): the longest in
  genjax are named here when one passes the limit."""
  long = []
  for module, path in sorted(_modules().items()):
    for node in ast.walk(ast.parse(open(path).read(), path)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
        long.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
  assert not long, "functions over 60 lines:\n" + "\n".join(long)
