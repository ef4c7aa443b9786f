"""Collects, per injected fault, how many trials ran and how they ended, and prints the table
at the end of the session (`pytest -s tests/reliability` shows it)."""

import collections

import pytest

_TABLE = collections.OrderedDict()  # fault -> {"trials": n, "outcomes": Counter}


class FaultTable:
  def record(self, fault: str, outcome: str):
    """outcome: "resumed bit-exact", "failed cleanly, nothing lost", or anything else (a failure)."""
    row = _TABLE.setdefault(fault, {"trials": 0, "outcomes": collections.Counter()})
    row["trials"] += 1
    row["outcomes"][outcome] += 1


@pytest.fixture(scope="session")
def fault_table():
  return FaultTable()


def pytest_terminal_summary(terminalreporter):
  if not _TABLE:
    return
  lines = [
    "",
    "fault injection                           trials  outcome",
    "----------------------------------------  ------  -------------------------------",
  ]
  for fault, row in _TABLE.items():
    outcomes = ", ".join(f"{n} {o}" for o, n in row["outcomes"].items())
    lines.append(f"{fault:<40}  {row['trials']:>6}  {outcomes}")
  terminalreporter.write_line("\n".join(lines))
