"""What the command-line entry points share: turning failures into one clear paragraph, and
joining a multi-host run. Imports no JAX at module level so flags can set XLA options first."""

import argparse
import logging
import os
import sys
import textwrap
from typing import Optional

from genjax.config import MAX_CPU_DEVICES, MAX_SEED


def add_cache_flag(parser: argparse.ArgumentParser):
  parser.add_argument(
    "--no_compilation_cache",
    action="store_true",
    help="compile without JAX's persistent compilation cache (on by default, in "
    "$GENJAX_HOME/compilation_cache; see genjax.compile_cache)",
  )


def setup_compilation_cache(args) -> Optional[str]:
  """The persistent compilation cache for this command (and the processes it starts), unless
  --no_compilation_cache; returns its folder or None."""
  from genjax import compile_cache

  apply_cpu_tuning()
  if getattr(args, "no_compilation_cache", False):
    os.environ[compile_cache.ENV_SWITCH] = "off"  # children of this command too
  return compile_cache.configure(enabled=not getattr(args, "no_compilation_cache", False))


def check_seed(seed: int, flag: str):
  """One-paragraph exit unless `seed` lies in [0, MAX_SEED]."""
  if not 0 <= seed <= MAX_SEED:
    fail(
      f"{flag}={seed} must be an integer from 0 to {MAX_SEED} (2**32 - 1): JAX's random keys take 32-bit "
      "seeds, so a larger one would repeat a smaller one."
    )


def add_distributed_flags(parser: argparse.ArgumentParser):
  add_cache_flag(parser)
  group = parser.add_argument_group("devices and hosts")
  group.add_argument(
    "--cpu_devices", type=int, default=None, help="simulate N devices on the CPU (sets XLA_FLAGS before JAX starts)"
  )
  group.add_argument(
    "--coordinator_address",
    default=None,
    help="host:port of process 0, for a multi-process run (jax.distributed.initialize)",
  )
  group.add_argument("--num_processes", type=int, default=None, help="number of processes in the run")
  group.add_argument("--process_id", type=int, default=None, help="this process's index")


# XLA:CPU aborts the process (LOG(FATAL), SIGABRT) when a collective's participants do not all
# arrive within 40 s. Simulated devices are threads sharing the host's cores, so on a small or
# busy machine the last device can reach an all-reduce minutes after the first: a slow run, not
# a deadlock. Simulated runs get 30 minutes before XLA gives up.
SIMULATED_COLLECTIVE_FLAGS = (
  "--xla_cpu_collective_call_warn_stuck_timeout_seconds=300",
  "--xla_cpu_collective_call_terminate_timeout_seconds=1800",
)


# XLA:CPU's defaults in jaxlib 0.10.2 hand each convolution to YNNPACK ("individual_convolution"
# library fusions), whose kernels ran the DDPM U-Net's 3x3 convolutions at 146 GFLOP/s forward and
# 37 GFLOP/s for the kernel gradient on the 2-core CPU, against 243 and 85-146 through XLA's own
# Eigen convolutions; YNNPACK's reduce fusions speed up the GroupNorm statistics. With these
# fusion types the ddpm_mnist.py:cpu train step took 354 ms instead of 581 ms, the CPU GPT,
# DCGAN, PixelCNN and VAE steps the same within noise (experiments/RESULTS.md, "Diffusion U-Net
# step beside diffusers"). Only for the jaxlib measured: the flag is experimental, and XLA aborts
# on a flag it does not know.
CPU_TUNING = {"0.10.2": ("--xla_cpu_experimental_ynn_fusion_type=dot,reduce,individual_dot",)}
CPU_TUNING_SWITCH = "GENJAX_XLA_CPU_TUNING"  # "off": XLA's own defaults


# genjax.threefry's lowering of JAX's random numbers, for the jaxlibs measured with it: on 0.10.2
# it keeps every bit and hashes a dropout mask ~7x faster (the ddpm_mnist.py:cpu step 1.27x -> 1.19x
# diffusers' time); with jax 0.12.0.1 (Python 3.12) XLA compiled the stack test's small GPT train
# step (dropout 0.1) for over 400 s with it, against 15 s without, so it stays off there.
UNROLLED_THREEFRY_JAXLIBS = ("0.10.2",)
UNROLLED_THREEFRY_SWITCH = "GENJAX_UNROLLED_THREEFRY"  # "off": JAX's own (rolled) lowering


# Per experiment (config.parallel.keep_cpu_memory): glibc's malloc, as it comes, hands every buffer
# over 32 MB to a fresh mmap and unmaps it when freed, and gives each thread an arena whose emptied
# heaps it unmaps too; XLA:CPU allocates a compiled program's temporary buffers at every call, so
# every step faults its working memory in again, 4 KiB at a time (the MNIST classifier's 1,000
# steps: 24 million minor page faults, 66 s of system time in a 116 s run). One arena, no mmap'd
# chunks and no trimming keep that memory mapped from one step to the next: the same run took 75 s
# with 2 s of system time and the same losses to the last bit; the DDPM U-Net step 0.85-0.89x
# diffusers' time instead of 1.04-1.09x. The cost: glibc's one heap never gives memory back, and it
# fragments. The Shakespeare GPT at batch 8 allocates a 670 MB temporary buffer per call; small
# allocations split the holes the freed ones leave, so new ones land past them, and the heap settled
# at 3.2-3.9 GB for 1.1 GB in use (at batch 64 it passed 23 GB within four steps and was killed,
# where the whole run peaks at 7 GB without; experiments/RESULTS.md, 2026-12-06, sixth and seventh
# sessions). So a watchdog thread caps the heap (MALLOC_HEAP_CAP_FRACTION of the machine's memory,
# or $GENJAX_MALLOC_HEAP_CAP_MB): past the cap the process goes back to handing memory back as glibc
# does by default (MALLOC_RELEASE_SETTINGS) and returns its free heap pages. Only for the
# experiments that ask (config.parallel.keep_cpu_memory: those measured faster with it) or where
# $GENJAX_MALLOC_TUNING is "on": a process keeps up to its cap of memory it no longer uses. Set with
# mallopt before JAX starts its threads, never where JAX will find an accelerator.
MALLOC_TUNING_SWITCH = "GENJAX_MALLOC_TUNING"  # "on" / "off": MALLOC_SETTINGS or not, whatever the config
MALLOC_HEAP_CAP_VARIABLE = "GENJAX_MALLOC_HEAP_CAP_MB"  # default: MALLOC_HEAP_CAP_FRACTION of memory
MALLOC_HEAP_CAP_FRACTION = 0.25
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -3, -4, -8  # <malloc.h>
MALLOC_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
# glibc's defaults, at the largest mmap threshold its own adaptation reaches (32 MB on 64 bits).
MALLOC_RELEASE_SETTINGS = ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20))
_MALLOC_WATCH_SECONDS = 0.1
_malloc_tuned: Optional[bool] = None
_malloc_released = None  # a threading.Event once tuned: set when the heap cap handed memory back


def _switched_off(variable: str) -> bool:
  return os.environ.get(variable, "").lower() in ("off", "0", "false")


def cpu_tuning_off() -> bool:
  return _switched_off(CPU_TUNING_SWITCH)


def _jaxlib_version() -> Optional[str]:
  from importlib import metadata

  try:
    return metadata.version("jaxlib")
  except metadata.PackageNotFoundError:
    return None


def cpu_tuned_xla_flags(flags: str = "") -> str:
  """`flags` (an XLA_FLAGS value) with genjax's XLA:CPU settings for the installed jaxlib
  (CPU_TUNING) added, unless $GENJAX_XLA_CPU_TUNING is "off" or `flags` already sets them."""
  if cpu_tuning_off():
    return flags
  tuning = CPU_TUNING.get(_jaxlib_version(), ())
  kept = flags.split()
  extra = [f for f in tuning if not any(k.startswith(f.split("=")[0] + "=") for k in kept)]
  return " ".join([*kept, *extra])


def unrolled_threefry_wanted() -> bool:
  """Whether this process should lower JAX's Threefry unrolled on CPU (genjax.threefry): on the
  jaxlibs measured with it, unless $GENJAX_XLA_CPU_TUNING or $GENJAX_UNROLLED_THREEFRY is "off"."""
  if cpu_tuning_off() or _switched_off(UNROLLED_THREEFRY_SWITCH):
    return False
  return _jaxlib_version() in UNROLLED_THREEFRY_JAXLIBS


def _runs_on_an_accelerator() -> bool:
  """Whether JAX will find an accelerator: $JAX_PLATFORMS names one, or a PJRT plugin (CUDA, ROCm)
  or libtpu is installed. Reads no JAX."""
  platforms = os.environ.get("JAX_PLATFORMS", "").lower()
  if platforms:
    return any(p.strip() not in ("cpu", "") for p in platforms.split(","))
  import importlib.util
  from importlib import metadata

  if importlib.util.find_spec("libtpu") is not None or list(metadata.entry_points(group="jax_plugins")):
    return True
  return importlib.util.find_spec("jax_plugins") is not None  # plugins found by module, not entry point


def malloc_tuning_wanted(config_asks: bool = False) -> bool:
  """Whether this process should keep its freed memory mapped (MALLOC_SETTINGS): when
  $GENJAX_MALLOC_TUNING is "on", or unset and the experiment asks (config.parallel.keep_cpu_memory),
  on Linux, and where JAX will run on the CPU."""
  if _switched_off(MALLOC_TUNING_SWITCH):
    return False
  if os.environ.get(MALLOC_TUNING_SWITCH, "").lower() not in ("on", "1", "true") and not config_asks:
    return False
  return sys.platform.startswith("linux") and not _runs_on_an_accelerator()


def malloc_heap_cap() -> int:
  """The heap size in bytes past which a tuned process hands memory back again:
  $GENJAX_MALLOC_HEAP_CAP_MB, else MALLOC_HEAP_CAP_FRACTION of the machine's memory."""
  value = os.environ.get(MALLOC_HEAP_CAP_VARIABLE, "").strip()
  if value:
    if not value.isdigit() or int(value) <= 0:
      fail(
        f"${MALLOC_HEAP_CAP_VARIABLE}={value!r} must be a positive whole number of megabytes: the size "
        f"of glibc's heap past which a process that keeps its freed memory mapped ({MALLOC_TUNING_SWITCH}=on, "
        f"or an experiment with parallel.keep_cpu_memory) gives it back again. Unset it for "
        f"{MALLOC_HEAP_CAP_FRACTION:.0%} of this machine's memory."
      )
    return int(value) << 20
  return int(MALLOC_HEAP_CAP_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _malloc_info_struct():
  import ctypes

  fields = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
  return type("mallinfo2", (ctypes.Structure,), {"_fields_": [(f, ctypes.c_size_t) for f in fields.split()]})


def _watch_malloc_heap(libc, cap: int, released) -> None:
  """Polls the heap's size (mallinfo2) until it passes `cap`, then restores MALLOC_RELEASE_SETTINGS,
  trims the heap (malloc_trim returns its free pages) and sets `released`."""
  import time

  while libc.mallinfo2().arena <= cap:
    time.sleep(_MALLOC_WATCH_SECONDS)
  for option, value in MALLOC_RELEASE_SETTINGS:
    libc.mallopt(option, value)
  libc.malloc_trim(0)
  released.set()
  logging.getLogger("genjax").warning(
    "glibc's heap passed %d MB: giving freed memory back to the system from now on (it is kept "
    "mapped only up to that size; $%s sets it).",
    cap >> 20,
    MALLOC_HEAP_CAP_VARIABLE,
  )


def tune_malloc(config_asks: bool = False) -> bool:
  """Applies MALLOC_SETTINGS with glibc's mallopt where malloc_tuning_wanted (decided by the first
  call in a process; `config_asks`: config.parallel.keep_cpu_memory), and starts the thread that
  restores glibc's release of memory once the heap passes malloc_heap_cap; returns whether the
  settings were applied. Call it before JAX starts its backend, whose threads
  would otherwise take arenas of their own."""
  global _malloc_tuned, _malloc_released
  if _malloc_tuned is None:
    _malloc_tuned = False
    if malloc_tuning_wanted(config_asks):
      import ctypes
      import threading

      cap = malloc_heap_cap()
      libc = ctypes.CDLL(None)
      if all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "mallinfo2", "malloc_trim")):
        libc.mallinfo2.restype = _malloc_info_struct()
        _malloc_tuned = all(libc.mallopt(option, value) == 1 for option, value in MALLOC_SETTINGS)
        if _malloc_tuned:
          _malloc_released = threading.Event()
          watch = threading.Thread(
            target=_watch_malloc_heap, args=(libc, cap, _malloc_released), name="genjax-heap-cap", daemon=True
          )
          watch.start()
  return _malloc_tuned


def malloc_tuned() -> bool:
  """Whether this process keeps its freed memory mapped (tune_malloc applied MALLOC_SETTINGS)."""
  return bool(_malloc_tuned)


def malloc_released() -> bool:
  """Whether a tuned process has passed its heap cap and gives freed memory back again."""
  return _malloc_released is not None and _malloc_released.is_set()


def apply_cpu_tuning(keep_cpu_memory: bool = False) -> None:
  """Puts cpu_tuned_xla_flags into $XLA_FLAGS for this process (before JAX starts its backend)
  and the processes it starts, keeps freed memory mapped where asked (tune_malloc), and, where
  unrolled_threefry_wanted, lowers JAX's Threefry hash for XLA:CPU without its rolled loop
  (genjax.threefry: the same random bits, several times faster)."""
  os.environ["XLA_FLAGS"] = cpu_tuned_xla_flags(os.environ.get("XLA_FLAGS", ""))
  tune_malloc(keep_cpu_memory)
  if unrolled_threefry_wanted():
    from genjax import threefry

    threefry.use_unrolled_lowering()


def simulated_devices_xla_flags(devices: int, flags: str = "") -> str:
  """`flags` (an XLA_FLAGS value) with `devices` simulated CPU devices and collective timeouts that
  suit them; flags already set for those options are kept."""
  kept = [f for f in flags.split() if not f.startswith("--xla_force_host_platform_device_count")]
  extra = [f for f in SIMULATED_COLLECTIVE_FLAGS if not any(k.startswith(f.split("=")[0] + "=") for k in kept)]
  return " ".join([*kept, f"--xla_force_host_platform_device_count={devices}", *extra])


def setup_devices(args, cpu_devices: Optional[int] = None, keep_cpu_memory: bool = False):
  """Applies --cpu_devices (else `cpu_devices`, an experiment's validated config.parallel.cpu_devices) and
  joins a multi-process run when asked or when a cluster is detected, then turns on the persistent
  compilation cache (genjax.compile_cache) unless --no_compilation_cache. Also makes gs:// paths go
  through gcsfs, the backend genjax's bucket tests use, unless EPATH_USE_TF says otherwise
  (genjax.paths)."""
  os.environ.setdefault("EPATH_USE_TF", "false")
  apply_cpu_tuning(keep_cpu_memory)
  if args.cpu_devices is not None:
    if not 0 < args.cpu_devices <= MAX_CPU_DEVICES:
      fail(
        f"--cpu_devices={args.cpu_devices} must be a positive number of simulated devices, at most {MAX_CPU_DEVICES}."
      )
    cpu_devices = args.cpu_devices
  if cpu_devices is not None:
    os.environ["XLA_FLAGS"] = simulated_devices_xla_flags(cpu_devices, os.environ.get("XLA_FLAGS", ""))
  import jax

  explicit = [args.coordinator_address, args.num_processes, args.process_id]
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      fail("A multi-process run needs all three of --coordinator_address, --num_processes and --process_id.")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
      fail(f"--process_id={args.process_id} must lie in [0, --num_processes={args.num_processes}).")
    host, _, port = args.coordinator_address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      fail(
        f"--coordinator_address={args.coordinator_address!r} must be HOST:PORT, the address of process 0 "
        "and a free port on it, e.g. 10.0.0.1:12345."
      )
    if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS", "") == "cpu":
      # CPU devices of different processes talk through gloo; it must be chosen before initialize.
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    _initialize(
      jax, coordinator_address=args.coordinator_address, num_processes=args.num_processes, process_id=args.process_id
    )
  elif _cluster_detected():
    _initialize(jax)  # TPU pods, SLURM, Open MPI, ...: JAX reads the environment
  setup_compilation_cache(args)


def _initialize(jax, **kwargs):
  try:
    jax.distributed.initialize(**kwargs)
  except (RuntimeError, ValueError, OSError) as e:  # XLA reports connection failures as RuntimeError
    where = kwargs.get("coordinator_address") or "the address the cluster environment gives"
    fail(
      f"Joining the multi-process run at {where} failed: {str(e).splitlines()[0][:300] if str(e) else e}. "
      "Start every process with the same --coordinator_address and --num_processes, process 0 first "
      "reachable from the others, each with its own --process_id."
    )


def _cluster_detected() -> bool:
  env = os.environ
  return (
    ("SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1)
    or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    or len(env.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1
  )


def fail(message: str, code: int = 2):
  """Prints one paragraph (no traceback) and exits with `code`."""
  text = textwrap.fill(" ".join(str(message).split()), width=100, break_on_hyphens=False, break_long_words=False)
  print(f"error: {text}", file=sys.stderr)
  sys.exit(code)


def configure_logging():
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
  for noisy in ("absl", "jax._src.xla_bridge", "orbax", "jax"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  # gcsfs logs every failed request with its traceback before raising; genjax turns the error it
  # raises into one paragraph (genjax.paths.storage_error), so its own log would only repeat it.
  logging.getLogger("gcsfs").setLevel(logging.CRITICAL)
  logging.getLogger("fsspec").setLevel(logging.WARNING)  # a line per file opened in a bucket
