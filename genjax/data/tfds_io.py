"""TFDS on machines without a network: where things live, preparing offline, clear errors.

Layout:
- `data_dir` holds prepared datasets (`<data_dir>/<name>/<version>/*.array_record-*`). It is
  `data.data_dir`, else the environment variable GENJAX_DATA_DIR, else ~/tensorflow_datasets.
- `manual_dir` holds the raw files TFDS would download, under the file names TFDS registers
  for them (`expected_files(name)`). It is `data.manual_dir` (the folder itself, or a folder
  with one sub-folder per dataset), else GENJAX_MANUAL_DIR/<name>/. MNIST and Fashion-MNIST
  use the same file names, so each dataset needs its own folder.

Preparing (`prepare`) writes the array_record format and needs TensorFlow, imported lazily by
TFDS only there; reading a prepared dataset with `tfds.data_source` does not import it. When a
run finds its dataset unprepared but its raw files at hand, `open_builder` prepares it in a
child process (`prepare_in_child`), so TensorFlow never loads into a process that
runs JAX: two native runtimes with their own thread pools and copies of the same libraries.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.resources
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import time
from typing import List, NamedTuple, Optional, Tuple

from genjax import errors, paths
from genjax.data import registry


class DatasetNotPreparedError(errors.MissingError):
  """A TFDS dataset is neither prepared nor preparable; the message says which files go where."""


class ChecksumMismatchError(errors.ConfigError):
  """A raw file in manual_dir is not the one TFDS registers (size or SHA-256 differ)."""


class RawFile(NamedTuple):
  filename: str  # the name TFDS looks for in manual_dir
  url: str
  size: int  # bytes
  sha256: str


def builtin_names() -> Tuple[str, ...]:
  """The TFDS datasets genjax knows as its own (genjax.data.registry): the ones it prepares
  offline and exports. Any other one is read as data.name="tfds:NAME" (`open_any`)."""
  return tuple(b.tfds_name for b in registry.tfds_entries())


def import_tfds():
  """Imports tensorflow_datasets (without TensorFlow).

  tensorflow_datasets 4.9 lazily imports the `importlib_resources` backport when it builds a
  dataset, without declaring it as a dependency. Python >= 3.11's `importlib.resources` has the
  API it uses (`abc.Traversable`), so it stands in when the backport is not installed.
  """
  if importlib.util.find_spec("importlib_resources") is None:
    sys.modules.setdefault("importlib_resources", importlib.resources)
  quiet_tensorflow()
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ModuleNotFoundError as e:
    raise DatasetNotPreparedError(
      f"Reading or preparing a TensorFlow Datasets dataset needs tensorflow-datasets and array_record, "
      f'which this installation lacks ({e}). Install them with `pip install -e ".[tfds]"` (preparing also '
      "needs `[prepare]`, which adds TensorFlow), or `pip install -r requirements.txt`; or read a portable "
      "export instead (python -m genjax.data.export --datasets NAME --out DIR on a machine with TFDS, then "
      "--config.data.data_dir=DIR or GENJAX_DATA_DIR=DIR here)."
    ) from None
  return tfds


def quiet_tensorflow():
  """TensorFlow's C++ log below errors and TFDS's absl lines below errors off (its warnings about
  a missing OpenCV or dataset_info.json of a folder being prepared are not the user's concern),
  in this process and the preparing child, so that `genjax.data.prepare` prints mostly its own
  summary lines. TensorFlow's oneDNN notice is printed before its logging starts, whatever the
  level: its oneDNN custom operations are turned off instead (TF_ENABLE_ONEDNN_OPTS=0; they change
  float round-off only, and preparing a dataset decodes and copies integers). Either variable set
  by the user wins."""
  import logging

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  for name in ("absl", "tensorflow", "tensorflow_datasets"):
    logging.getLogger(name).setLevel(logging.ERROR)
  try:
    from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top

    absl_logging.set_verbosity(absl_logging.ERROR)
  except ImportError:
    pass


def data_dir_for(data_cfg) -> str:
  """Where prepared TFDS datasets live: data.data_dir, $GENJAX_DATA_DIR, ~/tensorflow_datasets."""
  path = data_cfg.data_dir or os.environ.get("GENJAX_DATA_DIR") or "~/tensorflow_datasets"
  return str(paths.path(path))


def manual_dir_for(data_cfg, name: str) -> Optional[str]:
  """The folder holding `name`'s raw files, or None when neither config nor environment say."""
  if data_cfg.manual_dir:
    root = os.path.abspath(os.path.expanduser(data_cfg.manual_dir))
    # Either the dataset's own folder, or a folder with one sub-folder per dataset.
    return os.path.join(root, name) if os.path.isdir(os.path.join(root, name)) else root
  if os.environ.get("GENJAX_MANUAL_DIR"):
    return os.path.join(os.path.abspath(os.path.expanduser(os.environ["GENJAX_MANUAL_DIR"])), name)
  return None


def expected_files(name: str) -> List[RawFile]:
  """The raw files TFDS downloads for `name`, with the names it looks for in manual_dir."""
  tfds = import_tfds()
  infos = tfds.builder_cls(name).url_infos or {}
  return sorted(
    (
      RawFile(info.filename or url.rsplit("/", 1)[-1], url, int(info.size), info.checksum)
      for url, info in infos.items()
    ),
    key=lambda f: f.filename,
  )


def missing_files(name: str, manual_dir: Optional[str]) -> List[RawFile]:
  """The expected raw files that are not in `manual_dir` (all of them when it is None)."""
  files = expected_files(name)
  if manual_dir is None:
    return files
  return [f for f in files if not os.path.isfile(os.path.join(manual_dir, f.filename))]


def tensorflow_available() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def prepare_command(names, data_dir: str, manual_root: Optional[str]) -> str:
  names = [names] if isinstance(names, str) else list(names)
  manual = f" --manual_dir {manual_root}" if manual_root else " --manual_dir MANUAL_DIR"
  return f"python -m genjax.data.prepare --datasets {','.join(names)} --data_dir {data_dir}{manual}"


def _manual_root(manual_dir: Optional[str]) -> Optional[str]:
  """The folder that holds a dataset's raw-file folder: what --manual_dir of the prepare command takes."""
  return os.path.dirname(manual_dir.rstrip("/")) if manual_dir else None


def not_prepared_message(name: str, data_dir: str, manual_dir: Optional[str], reason: str) -> str:
  folder = manual_dir or f"MANUAL_DIR/{name}"
  files = expected_files(name)
  missing = {f.filename for f in missing_files(name, manual_dir)}
  lines = [
    f"Dataset {name!r} is not prepared in {data_dir} ({reason}).",
    f"Put these files (the names TFDS expects) in {folder}/:",
  ]
  for f in files:
    state = "missing" if f.filename in missing else "present"
    lines.append(f"  {f.filename:32s} {f.size:>11,d} bytes  sha256 {f.sha256}  [{state}]  from {f.url}")
  lines.append("then prepare it (needs tensorflow-cpu, only for this step):")
  lines.append(f"  {prepare_command(name, data_dir, _manual_root(manual_dir))}")
  lines.append(
    "or set data.manual_dir / GENJAX_MANUAL_DIR (a folder with one sub-folder per dataset) "
    "and genjax prepares it on first use."
  )
  return "\n".join(lines)


def prepare(name: str, data_dir: str, manual_dir: Optional[str]):
  """Prepares `name` as array_record in `data_dir` from the raw files in `manual_dir`.

  Returns the prepared builder. Raises DatasetNotPreparedError when files or TensorFlow are
  missing and ChecksumMismatchError when a raw file is not the registered one.
  """
  tfds = import_tfds()
  missing = missing_files(name, manual_dir)
  if missing:
    raise DatasetNotPreparedError(
      not_prepared_message(name, data_dir, manual_dir, f"missing raw files: {', '.join(f.filename for f in missing)}")
    )
  if not tensorflow_available():
    raise DatasetNotPreparedError(
      not_prepared_message(name, data_dir, manual_dir, "preparing needs TensorFlow: pip install tensorflow-cpu")
    )
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  if builder.is_prepared():
    return builder
  from tensorflow_datasets.core.download import download_manager  # pylint: disable=g-import-not-at-top

  os.makedirs(data_dir, exist_ok=True)
  # Extracted copies of the raw files are only needed while preparing: keep them out of data_dir.
  with tempfile.TemporaryDirectory(prefix=f"genjax-{name}-", dir=data_dir) as download_dir:
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    said = io.StringIO()  # TFDS prints "Downloading and preparing ..." to stdout; genjax says it once
    try:
      with contextlib.redirect_stdout(said):
        builder.download_and_prepare(download_dir=download_dir, download_config=config)
    except download_manager.NonMatchingChecksumError as e:
      files = "\n".join(
        f"  {f.filename}: {f.size:,d} bytes, sha256 {f.sha256}, from {f.url}" for f in expected_files(name)
      )
      raise ChecksumMismatchError(
        f"A raw file for {name!r} in {manual_dir} does not match the size/SHA-256 TFDS registers "
        f"(a truncated or different download?). TFDS said: {e}\nReplace it with a fresh copy of:\n"
        f"{files}\nthen rerun: {prepare_command(name, data_dir, _manual_root(manual_dir))}"
      ) from e
    except BaseException:
      sys.stdout.write(said.getvalue())  # what TFDS printed belongs with its error
      raise
  return builder


def open_builder(name: str, data_cfg):
  """The prepared TFDS builder of `name`, preparing it first when its raw files are at hand."""
  tfds = import_tfds()
  data_dir = data_dir_for(data_cfg)
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  if not builder.is_prepared():
    manual_dir = manual_dir_for(data_cfg, name)
    if missing_files(name, manual_dir) or not tensorflow_available():
      reason = "no raw files found" if manual_dir is None else "cannot prepare it automatically"
      if manual_dir and not tensorflow_available():
        reason = "preparing needs TensorFlow: pip install tensorflow-cpu"
      raise DatasetNotPreparedError(not_prepared_message(name, data_dir, manual_dir, reason))
    start = time.time()
    print(
      f"genjax: preparing {name} in {data_dir} from {manual_dir} (a child process) ...", file=sys.stderr, flush=True
    )
    prepare_in_child(name, data_dir, manual_dir)
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    print(f"genjax: prepared {name} in {time.time() - start:.1f} s", file=sys.stderr, flush=True)
  _require_array_record(
    builder,
    name,
    f"Prepare it into another data_dir: {prepare_command(name, os.path.join(data_dir, 'array_record'), None)}",
  )
  return builder


def _require_array_record(builder, spec: str, remedy: str):
  """Refuses a dataset prepared in a format genjax cannot read at random, saying `remedy`."""
  file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
  if str(file_format) != "array_record":
    raise DatasetNotPreparedError(
      f"Dataset {spec!r} in {builder.data_dir} was prepared as {file_format}, but genjax reads "
      f"array_record (random access without TensorFlow). {remedy}"
    )


# Exit codes of the child process that prepares a dataset, and the errors they stand for.
_CHILD_ERRORS = {3: DatasetNotPreparedError, 4: ChecksumMismatchError}


def prepare_in_child(name: str, data_dir: str, manual_dir: Optional[str]):
  """Runs `prepare` in a child Python process; raises its error here with the same message.

  The child's output goes where this process's goes; its error message comes back through a
  file, so a failure reads the same as an in-process one.
  """
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
  with tempfile.TemporaryDirectory(prefix="genjax-prepare-") as scratch:
    message_file = os.path.join(scratch, "error.txt")
    command = [
      sys.executable,
      "-c",
      "import sys; from genjax.data import tfds_io; sys.exit(tfds_io.child_main(sys.argv[1:]))",
      name,
      data_dir,
      manual_dir or "",
      message_file,
    ]
    code = subprocess.run(command, env=env, check=False).returncode
    if code == 0:
      return
    message = open(message_file).read() if os.path.exists(message_file) else ""
    if code in _CHILD_ERRORS:
      raise _CHILD_ERRORS[code](message)
    raise DatasetNotPreparedError(
      f"Preparing {name!r} in a child process failed (exit code {code}); its output is above. "
      f"Run it by hand to see the whole error: "
      f"{prepare_command(name, data_dir, _manual_root(manual_dir))}"
    )


def child_main(argv) -> int:
  """The child's side of `prepare_in_child`: prepares, or writes the error's message and exits
  with its code."""
  name, data_dir, manual_dir, message_file = argv
  import_tfds().disable_progress_bar()  # the parent prints one line before and one after
  try:
    prepare(name, data_dir, manual_dir or None)
  except (DatasetNotPreparedError, ChecksumMismatchError) as e:
    with open(message_file, "w") as f:
      f.write(str(e))
    return next(code for code, kind in _CHILD_ERRORS.items() if isinstance(e, kind))
  return 0


def open_any(spec: str, data_cfg):
  """The prepared TFDS builder of `spec` ("name", "name:version" or "name/config:version") for
  `data.name="tfds:SPEC"`: any TFDS dataset, prepared beforehand (genjax prepares only its own)."""
  from genjax.config import ConfigError  # pylint: disable=g-import-not-at-top

  tfds = import_tfds()
  data_dir = data_dir_for(data_cfg)
  try:
    builder = tfds.builder(spec, data_dir=data_dir, file_format="array_record")
  except (tfds.core.registered.DatasetNotFoundError, AssertionError, ValueError) as e:
    name = spec.split(":")[0].split("/")[0]
    close = difflib.get_close_matches(
      name, tfds.core.registered.list_imported_builders(), n=3
    )  # (list_builders imports TensorFlow)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ConfigError(
      f"data.name='tfds:{spec}': TFDS cannot open {spec!r} ({str(e).splitlines()[0]}).{hint} Write "
      "tfds:NAME, tfds:NAME:VERSION or tfds:NAME/CONFIG:VERSION with a name from "
      "https://www.tensorflow.org/datasets/catalog (or a dataset prepared in data.data_dir)."
    ) from None
  if not builder.is_prepared():
    raise DatasetNotPreparedError(
      f"Dataset {spec!r} is not prepared in {data_dir}. genjax prepares only its own datasets "
      "offline; prepare this one where it can be downloaded, as array_record:\n"
      f"  tfds build {spec} --data_dir {data_dir} --file_format array_record\n"
      f"then copy {data_dir}/{spec.split(':')[0]} here (or point data.data_dir / GENJAX_DATA_DIR at it)."
    )
  _require_array_record(
    builder,
    spec,
    f"Rebuild it with tfds build {spec} --data_dir {os.path.join(data_dir, 'array_record')} "
    "--file_format array_record and set data.data_dir to that folder.",
  )
  return builder
