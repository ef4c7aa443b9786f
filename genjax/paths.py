"""One path layer for every file genjax reads or writes: local folders and buckets alike.

Paths are `etils.epath.Path` (what Orbax and TFDS use): a local path, or `gs://bucket/...` (and
any other scheme epath knows, through fsspec: `s3://`, ...). Local paths keep their POSIX
meaning (relative paths resolve against the working directory, `~` expands); bucket paths are
never touched by `os.path`.

Atomic writes: locally a temporary file renamed over the target (readers see the old file or
the new one). In a bucket an object write is already all-or-nothing (the object appears only
when its upload completes), so the object is written in one request. Appending does not exist
in a bucket: `append_line` rewrites the object with the line added (metrics files are small).

Which library serves gs://: epath picks tf.io.gfile when TensorFlow is installed, else fsspec's
gcsfs. genjax's bucket tests run against gcsfs (EPATH_USE_TF=false), so the entry points
(genjax.cli.setup_devices) make that the default for genjax's processes unless EPATH_USE_TF is set.
"""

import os
import socket
import urllib.parse
from typing import Optional, Tuple, Union

from etils import epath

from genjax.errors import StorageError  # noqa: F401 - re-exported

PathLike = Union[str, os.PathLike]


def is_remote(path: PathLike) -> bool:
  """Whether `path` names a bucket (gs://, s3://, ...) rather than a local file."""
  return "://" in os.fspath(path)


def path(p: PathLike) -> epath.Path:
  """`p` as an epath.Path: buckets as they are, local paths absolute with `~` expanded."""
  p = os.fspath(p)
  if is_remote(p):
    return epath.Path(p)
  return epath.Path(os.path.abspath(os.path.expanduser(p)))


def genjax_home() -> str:
  """$GENJAX_HOME (default ~/.genjax): where genjax keeps what it makes once per machine or user
  (classifiers, reference statistics, weights, the compilation cache); a local folder or a bucket."""
  return str(path(os.environ.get("GENJAX_HOME", "~/.genjax")))


def local_home() -> str:
  """$GENJAX_HOME, or ~/.cache/genjax when it is a bucket: for what genjax keeps once per machine
  and reads as local files (the compilation cache, memory-mapped latent caches)."""
  home = genjax_home()
  return os.path.join(os.path.expanduser("~"), ".cache", "genjax") if is_remote(home) else home


def join(base: PathLike, *parts: str) -> str:
  """`base/parts...` as a string; a bucket path keeps its scheme."""
  return os.fspath(path(base).joinpath(*parts))


def exists(p: PathLike) -> bool:
  return path(p).exists()


def isdir(p: PathLike) -> bool:
  return path(p).is_dir()


def makedirs(p: PathLike):
  """Creates folder `p` and its parents. A no-op in a bucket, which has no folders: objects are
  written under any prefix (and gcsfs would otherwise create a missing *bucket*, which genjax
  never does behind the user's back)."""
  if not is_remote(p):
    path(p).mkdir(parents=True, exist_ok=True)


def read_text(p: PathLike) -> str:
  return path(p).read_text()


def read_bytes(p: PathLike) -> bytes:
  return path(p).read_bytes()


def open_file(p: PathLike, mode: str = "r"):
  """A file object for reading or writing `p` (binary modes for numpy and PIL)."""
  return path(p).open(mode)


def write_atomic(p: PathLike, data: Union[str, bytes]):
  """Writes `data` so that readers see the old content or the new, never half of it."""
  target = path(p)
  mode = "wb" if isinstance(data, bytes) else "w"
  if is_remote(p):
    with target.open(mode) as f:
      f.write(data)
    return
  tmp = target.parent / f"{target.name}.tmp{os.getpid()}"
  with tmp.open(mode) as f:
    f.write(data)
  os.replace(tmp, target)


def append_line(p: PathLike, line: str):
  """Adds one line to the text file `p` (creating it)."""
  line = line.rstrip("\n") + "\n"
  if not is_remote(p):
    with open(path(p), "a") as f:
      f.write(line)
    return
  target = path(p)
  old = target.read_text() if target.exists() else ""
  write_atomic(target, old + line)


def move(source: PathLike, target: PathLike):
  """Moves a file or folder. In a bucket, where folders are only name prefixes, every object
  under `source` is copied to `target` and then deleted (fsspec's recursive move)."""
  if not is_remote(source):
    makedirs(path(target).parent)
    path(source).rename(path(target))
    return
  import fsspec

  scheme = os.fspath(source).split("://", 1)[0]
  # the instance epath (hence Orbax) uses, so that its listings see the move
  fs = fsspec.filesystem("gcs", finalize_on_close=True) if scheme in ("gs", "gcs") else fsspec.filesystem(scheme)
  fs.mv(fs._strip_protocol(os.fspath(source)), fs._strip_protocol(os.fspath(target)), recursive=True)
  fs.invalidate_cache()


REACH_TIMEOUT_S = 5.0  # how long check_reachable waits for the storage service to answer
_reached = set()  # endpoints this process has reached: probed once


def endpoint(location: PathLike) -> Optional[Tuple[str, int]]:
  """(host, port) of the service that serves the bucket of `location` (gs://: Cloud Storage, or
  STORAGE_EMULATOR_HOST), or None for a local path or a scheme genjax does not probe."""
  location = os.fspath(location)
  if not is_remote(location) or location.split("://", 1)[0] not in ("gs", "gcs"):
    return None
  url = os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"
  parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
  return parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)


def check_reachable(location: PathLike, action: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
  """StorageError within `timeout_s` when the service of `location`'s bucket cannot be reached
  (no network, a firewall, a wrong STORAGE_EMULATOR_HOST), rather than after the storage client's
  minute of retries. One TCP connection per endpoint and process; skipped for local paths and
  behind a proxy (HTTPS_PROXY), which the client reaches instead."""
  address = endpoint(location)
  if address is None or address in _reached:
    return
  if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
    return
  try:
    socket.create_connection(address, timeout=timeout_s).close()
  except OSError as e:
    host, port = address
    raise StorageError(
      f"Cannot {action} {os.fspath(location)}: {host}:{port}, the storage service of {_bucket(os.fspath(location))}, "
      f"could not be reached within {timeout_s:.0f} s ({type(e).__name__}: {e}). Check this machine's network "
      "(a firewall or a proxy: set HTTPS_PROXY), or STORAGE_EMULATOR_HOST if you use an emulator; "
      "nothing was read or written."
    ) from None
  _reached.add(address)


def _bucket(location: str) -> str:
  scheme, rest = os.fspath(location).split("://", 1)
  return f"{scheme}://{rest.split('/', 1)[0]}"


def _http_code(error: BaseException):
  code = getattr(error, "code", None)
  if isinstance(code, int):
    return code
  text = str(error)
  if text.startswith("Forbidden"):
    return 403
  return None


def storage_error(error: BaseException, location: PathLike, action: str) -> StorageError:
  """One paragraph saying why `action` (e.g. "write the --workdir") failed on `location` and how
  to fix it: no credentials, a bucket that does not exist, no permission, or a local folder that
  cannot be written."""
  location = os.fspath(location)
  detail = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}"
  if not is_remote(location):
    return StorageError(
      f"Cannot {action} {location} ({detail}). Choose a folder on a disk you can write to with free space; "
      "nothing that was already saved there was changed."
    )
  bucket = _bucket(location)
  if isinstance(error, ImportError):
    return StorageError(
      f"Cannot {action} {location}: reading and writing {bucket.split('://')[0]}:// paths needs gcsfs "
      f"({detail}). `pip install gcsfs` (or genjax[gcs]) and rerun."
    )
  code = _http_code(error)
  credentials = type(error).__name__ in ("DefaultCredentialsError", "RefreshError", "TransportError")
  if credentials or code == 401:
    return StorageError(
      f"Cannot {action} {location}: no valid credentials for {bucket} ({detail}). On a TPU or GCE VM the "
      "VM's service account is used: give the VM the storage scope. Elsewhere run "
      "`gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service "
      "account key file. Nothing in the bucket was changed."
    )
  if code == 403 or isinstance(error, PermissionError):
    return StorageError(
      f"Cannot {action} {location}: the account genjax runs as has no permission on {bucket} ({detail}). "
      "Grant it roles/storage.objectAdmin on the bucket "
      f"(`gcloud storage buckets add-iam-policy-binding {bucket} --member=... --role=roles/storage.objectAdmin`), "
      "or choose a bucket it may write to. Nothing in the bucket was changed."
    )
  if isinstance(error, FileNotFoundError) or code == 404:
    return StorageError(
      f"Cannot {action} {location}: the bucket {bucket} does not exist or is not visible to this account "
      f"({detail}). Create it (`gcloud storage buckets create {bucket} --location=REGION`, in the region "
      "of your TPUs) or fix the path."
    )
  return StorageError(
    f"Cannot {action} {location} ({detail}). Check the path, the network and the credentials for {bucket}; "
    "nothing that was already saved there was changed."
  )
