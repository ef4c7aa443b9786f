"""Every test sees 8 simulated CPU devices, so parallel code paths run on one machine, with the
XLA:CPU settings of genjax's commands (genjax.cli.apply_cpu_tuning).

The tests and every process they start share one persistent compilation cache
(JAX_COMPILATION_CACHE_DIR, default .data/compilation_cache in the checkout): a program that one
test compiled is read back by the next test, or the next run, that builds the same program.

Each test module starts from empty JAX caches (compiled programs of earlier modules are not kept
alive for the whole session), and no test may load TensorFlow into this JAX process: code that
needs it (preparing datasets) runs in a child process.
"""

import gc
import os
import sys

import pytest

from genjax import compile_cache
from genjax.cli import apply_cpu_tuning, simulated_devices_xla_flags

_USER_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = simulated_devices_xla_flags(8, os.environ.get("XLA_FLAGS", ""))
# The XLA:CPU settings genjax's commands run with (genjax.cli.CPU_TUNING), here and in every child,
# but JAX's own Threefry lowering instead of genjax.threefry's unrolled one (unless
# $GENJAX_UNROLLED_THREEFRY is set): the tests mostly compile, and the unrolled hash compiles
# slower (the dropout-heavy diffusion tests ran 3-14 s faster each without it; the whole run's
# time moves by more than that from run to run; experiments/RESULTS.md, 2026-12-06, fifth session).
# tests/test_threefry.py checks that both lowerings give the same bits.
os.environ.setdefault("GENJAX_UNROLLED_THREEFRY", "off")
apply_cpu_tuning()
# Two settings for tests only, each kept when XLA_FLAGS already sets it:
# - LLVM at optimisation level 1 instead of XLA's default: most tests compile far more than they
#   run. On the 2-core CPU (fresh compilation cache, one process) the GAN end-to-end test and the
#   U-Net tests took 46 s instead of 64 s, and the DCGAN test that trains 49.5 s instead of 54.5 s
#   (level 0 compiled faster still but ran that training in 117 s).
# - a collective that waits 10 minutes ends its process (a failed test) instead of XLA's 30 that
#   genjax's simulated devices get: a deadlocked all-reduce once held a CI worker for half an hour.
_TEST_ONLY_FLAGS = (
  "--xla_backend_optimization_level=1",
  "--xla_cpu_collective_call_terminate_timeout_seconds=600",
)
for _flag in _TEST_ONLY_FLAGS:
  _name = _flag.split("=")[0] + "="
  if _name not in _USER_XLA_FLAGS:
    _kept = [f for f in os.environ["XLA_FLAGS"].split() if not f.startswith(_name)]
    os.environ["XLA_FLAGS"] = " ".join([*_kept, _flag])
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_REPO, ".data", "compilation_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(compile_cache.MIN_COMPILE_SECONDS))


@pytest.fixture(autouse=True, scope="module")
def _module_hygiene(request):
  yield
  import jax  # pylint: disable=g-import-not-at-top

  jax.clear_caches()
  gc.collect()
  assert "tensorflow.python" not in sys.modules, (
    f"{request.module.__name__} loaded TensorFlow into the test process; run that code in a child "
    "process (as genjax does when it prepares a dataset)"
  )


# The fault-injection table (tests/reliability/fault_table.py): filled wherever the tests ran,
# printed once by the process that reports. Under pytest-xdist every worker sends its rows home.
def pytest_sessionfinish(session):
  workeroutput = getattr(session.config, "workeroutput", None)
  if workeroutput is not None:
    from tests.reliability import fault_table  # pylint: disable=g-import-not-at-top

    workeroutput["fault_table"] = fault_table.rows()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
  from tests.reliability import fault_table  # pylint: disable=g-import-not-at-top

  fault_table.merge(getattr(node, "workeroutput", {}).get("fault_table", {}))


def pytest_terminal_summary(terminalreporter):
  from tests.reliability import fault_table  # pylint: disable=g-import-not-at-top

  if fault_table.lines():
    terminalreporter.write_line("\n".join(fault_table.lines()))
