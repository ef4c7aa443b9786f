"""JAX's persistent compilation cache, on for every genjax command.

A compiled XLA program is written to disk the first time it is built and read back the next time
the same program is asked for (by the same JAX and jaxlib, backend, devices, XLA flags and
compile options: JAX hashes all of them into the entry's key), so a resumed `train`, a `sample`
or an `evaluate` of a finished run, a `bench` or a `profile` skips most of its compilation.
Entries hold executables only, never arrays or parameters; the numbers a run computes are the
same with the cache and without (tests/test_compile_cache.py).

Where, in order:
  JAX_COMPILATION_CACHE_DIR   JAX's own variable (or jax_compilation_cache_dir set in code): used as it is
  GENJAX_COMPILATION_CACHE    a folder; or 0 / off / false to switch the cache off
  $GENJAX_HOME/compilation_cache   the default (~/.genjax/compilation_cache); when GENJAX_HOME
                              is a bucket, ~/.cache/genjax/compilation_cache (the cache is local)
Every command's `--no_compilation_cache` flag switches it off for that command. Clearing it is
deleting the folder. A folder that cannot be written is reported in one warning and the command
runs uncached; a full disk or an entry from another JAX version costs a recompilation, never a
run (JAX warns and compiles).
"""

import logging
import os
from typing import Optional

from genjax import paths

ENV_SWITCH = "GENJAX_COMPILATION_CACHE"
JAX_ENV_DIR = "JAX_COMPILATION_CACHE_DIR"
_OFF = ("0", "off", "false", "no", "none")
# Programs that compile faster than this are not worth a file (JAX's default is 1 s; genjax's
# evaluation and sampling calls often take 0.2-1 s on a CPU, and a read costs milliseconds).
MIN_COMPILE_SECONDS = 0.2

log = logging.getLogger("genjax")


def default_dir() -> str:
  """$GENJAX_HOME/compilation_cache, or a local folder when GENJAX_HOME is a bucket."""
  return os.path.join(paths.local_home(), "compilation_cache")


def chosen_dir(enabled: bool = True) -> Optional[str]:
  """The folder the cache would use (None: switched off), from the flag and the environment."""
  if not enabled:
    return None
  import jax

  if os.environ.get(JAX_ENV_DIR) or jax.config.jax_compilation_cache_dir:
    return os.environ.get(JAX_ENV_DIR) or jax.config.jax_compilation_cache_dir
  switch = os.environ.get(ENV_SWITCH, "").strip()
  if switch.lower() in _OFF:
    return None
  return os.path.abspath(os.path.expanduser(switch)) if switch else default_dir()


def _writable(folder: str) -> Optional[str]:
  """None when `folder` can be created and written, else why not."""
  if paths.is_remote(folder):
    return None  # JAX writes buckets through etils.epath; a failure there is JAX's warning
  try:
    os.makedirs(folder, exist_ok=True)
    probe = os.path.join(folder, f".genjax_probe_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("probe\n")
    os.remove(probe)
  except OSError as e:
    return f"{type(e).__name__}: {e}"
  return None


def configure(enabled: bool = True) -> Optional[str]:
  """Turns the persistent cache on (in `chosen_dir`) or off; returns the folder in use or None.
  Call before the first compilation. Never raises for a bad folder: it warns and runs uncached."""
  import jax

  folder = chosen_dir(enabled)
  if folder is None:
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  problem = _writable(folder)
  if problem is not None:
    log.warning(
      "warning: the compilation cache folder %s cannot be written (%s); compiling without a cache. Set %s "
      "to a writable folder, or pass --no_compilation_cache to silence this.",
      folder,
      problem,
      ENV_SWITCH,
    )
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", folder)
  if not os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  log.debug("compilation cache: %s", folder)
  return folder
