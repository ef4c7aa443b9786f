"""genjax's Flax Inception-v3 against pytorch-fid's own graph, on the same random weights (the
real FID weights cannot be downloaded here): pool3 features, logits and FID agree to float
rounding. Runs experiments/reference/torch_fid_inception.py with GENJAX_TORCH_FID_PYTHON, a
Python that has torch, torchvision and pytorch-fid (kept out of genjax's requirements); skipped
without it."""

import os
import subprocess

import jax
import numpy as np
import pytest

from genjax.metrics import frechet, inception

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_flax_inception_matches_pytorch_fid_on_the_same_weights(tmp_path):
  python = os.environ.get("GENJAX_TORCH_FID_PYTHON")
  if not python:
    pytest.skip("set GENJAX_TORCH_FID_PYTHON to a Python with torch, torchvision and pytorch-fid")
  script = os.path.join(REPO, "experiments", "reference", "torch_fid_inception.py")
  run = subprocess.run(
    [python, script, "--out", str(tmp_path), "--num", "150"], capture_output=True, text=True, timeout=1800
  )
  assert run.returncode == 0, run.stderr[-3000:]
  torch_out = np.load(tmp_path / "torch.npz")
  images = np.load(tmp_path / "images.npy")
  variables = inception.variables_from_state_dict(inception.read_torch_state_dict(str(tmp_path / "weights.pth")))
  apply = jax.jit(lambda x: inception.FIDInceptionV3().apply(variables, x))
  feats, logits = zip(*(jax.device_get(apply(images[i : i + 50])) for i in range(0, len(images), 50)))
  feats, logits = np.concatenate(feats).astype(np.float64), np.concatenate(logits)
  # the random network's features really depend on the image (std across images, per feature)
  assert np.std(torch_out["features"], axis=0).mean() > 0.1
  np.testing.assert_allclose(feats, torch_out["features"], rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(logits, torch_out["logits"], rtol=1e-3, atol=1e-3)
  n = len(images) // 2
  ours = frechet.frechet_distance(
    feats[:n].mean(0), np.cov(feats[:n], rowvar=False), feats[n:].mean(0), np.cov(feats[n:], rowvar=False)
  )
  assert float(torch_out["fid"]) > 10.0  # two different sets of images
  np.testing.assert_allclose(ours, float(torch_out["fid"]), rtol=1e-3)
  print(
    f"FID pytorch-fid {float(torch_out['fid']):.6f} genjax {ours:.6f}; features max |diff| "
    f"{np.abs(feats - torch_out['features']).max():.2e}"
  )
