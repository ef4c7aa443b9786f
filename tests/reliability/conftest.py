"""The `fault_table` fixture: per injected fault, how many trials ran and how they ended; the table
is printed at the end of the session by tests/conftest.py, merged over the pytest-xdist workers."""

import pytest

from tests.reliability import fault_table as table


class FaultTable:
  def record(self, fault: str, outcome: str):
    """outcome: "resumed bit-exact", "failed cleanly, nothing lost", "restarted from 0 bit-exact,
    nothing lost" (train --restart_from_scratch), or anything else (a failure)."""
    table.record(fault, outcome)


@pytest.fixture(scope="session")
def fault_table():
  return FaultTable()
