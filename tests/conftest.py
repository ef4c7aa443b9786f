"""Every test sees 8 simulated CPU devices, so parallel code paths run on one machine.

Each test module starts from empty JAX caches (compiled programs of earlier modules are not kept
alive for the whole session), and no test may load TensorFlow into this JAX process: code that
needs it (preparing datasets) runs in a child process.
"""

import gc
import os
import sys

import pytest

from genjax.cli import simulated_devices_xla_flags

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = simulated_devices_xla_flags(8, os.environ.get("XLA_FLAGS", ""))
os.environ.setdefault("JAX_PLATFORMS", "cpu")


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
