"""The errors a user can fix, and nothing else.

Everything a user can put right (a config value, a flag, a sampling option, a file, a dataset, a
workdir, a checkpoint, a bucket) raises a subclass of `UserError`, whose message says what was
wrong and how to fix it. Every entry point catches `UserError` and nothing broader, prints the
message as one paragraph and exits with the error's `exit_code`; any other exception is a bug in
genjax and stays a traceback. Each class also keeps the built-in base a caller of the pure
functions would expect (a `ConfigError` is a ValueError, a `MissingError` a FileNotFoundError).

Imports nothing from genjax: every layer may raise these.
"""


class UserError(Exception):
  """Something the user can fix; the message says what and how."""

  exit_code = 2


class ConfigError(UserError, ValueError):
  """A value the user gave (a config field, a flag, a sampling option) that cannot work."""


class MissingError(UserError, FileNotFoundError):
  """A file, folder, workdir or dataset that is not where the user said it would be."""


class StorageError(UserError, RuntimeError):
  """A file or bucket genjax cannot read or write, with what to do about it."""


class CheckpointError(UserError, RuntimeError):
  """A workdir's checkpoints cannot be restored (none readable, or another model's)."""


class ToolError(UserError, RuntimeError):
  """A program or tool genjax runs on the user's behalf (a reference implementation it is measured
  beside, the profiler) failed or printed nothing usable; the message quotes what it said."""


class NumericalError(UserError, ArithmeticError):
  """A computation on the user's samples or data failed numerically (NaN or inf samples, a
  covariance from too few examples); the message says which."""
