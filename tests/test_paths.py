"""genjax.paths: local behaviour of the path layer, and the paragraph each storage failure gets.
The bucket side runs end to end against an emulator in tests/reliability/test_bucket.py."""

import os

import pytest

from genjax import paths


def test_local_paths_are_absolute_and_buckets_untouched(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert str(paths.path("runs/a")) == os.path.join(str(tmp_path), "runs", "a")
  assert str(paths.path("~/x")) == os.path.join(os.path.expanduser("~"), "x")
  assert paths.join("gs://bucket/run", "checkpoints") == "gs://bucket/run/checkpoints"
  assert paths.is_remote("gs://b/x") and not paths.is_remote("/tmp/x")


def test_write_atomic_replaces_whole_and_leaves_no_temporary(tmp_path):
  target = tmp_path / "f.json"
  paths.write_atomic(target, "old")
  paths.write_atomic(target, "new")
  paths.write_atomic(tmp_path / "b.bin", b"\x00\x01")
  assert target.read_text() == "new"
  assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
  assert sorted(os.listdir(tmp_path)) == ["b.bin", "f.json"]


def test_append_line_adds_one_line_each(tmp_path):
  for line in ("a", "b\n", "c"):
    paths.append_line(tmp_path / "m.jsonl", line)
  assert (tmp_path / "m.jsonl").read_text() == "a\nb\nc\n"


def test_move_a_local_folder_into_a_new_parent(tmp_path):
  (tmp_path / "src").mkdir()
  (tmp_path / "src" / "x").write_text("1")
  paths.move(tmp_path / "src", tmp_path / "quarantine" / "src-1")
  assert (tmp_path / "quarantine" / "src-1" / "x").read_text() == "1" and not (tmp_path / "src").exists()


def test_makedirs_never_touches_a_bucket():
  paths.makedirs("gs://no-such-bucket-genjax-test/run")  # no network, no bucket created: a no-op


class _HttpError(Exception):  # the shape of gcsfs.retry.HttpError
  def __init__(self, code, message):
    super().__init__(message)
    self.code = code


class DefaultCredentialsError(Exception):  # google.auth.exceptions.DefaultCredentialsError's name
  pass


@pytest.mark.parametrize(
  "error, said",
  [
    (_HttpError(401, "Anonymous caller does not have storage.objects.create access"), "no valid credentials"),
    (DefaultCredentialsError("Your default credentials were not found"), "gcloud auth application-default login"),
    (OSError("Forbidden: https://storage.googleapis.com/upload/b/bk/o"), "has no permission on gs://bk"),
    (_HttpError(403, "does not have storage.objects.create access"), "roles/storage.objectAdmin"),
    (FileNotFoundError("https://storage.googleapis.com/b/bk"), "the bucket gs://bk does not exist"),
    (ImportError("No module named 'gcsfs'"), "pip install gcsfs"),
    (RuntimeError("connection reset"), "Check the path, the network and the credentials for gs://bk"),
  ],
)
def test_each_bucket_failure_gets_its_own_paragraph(error, said):
  message = str(paths.storage_error(error, "gs://bk/run", "write the --workdir"))
  assert said in message
  assert message.startswith("Cannot write the --workdir gs://bk/run")
  assert "\n" not in message


def test_a_local_failure_says_choose_a_writable_folder():
  message = str(paths.storage_error(PermissionError(13, "Permission denied"), "/ro/run", "write the --workdir"))
  assert "Cannot write the --workdir /ro/run" in message and "you can write to" in message
