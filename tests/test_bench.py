"""The benchmark runs in quick mode (test-size models, a few steps) so it cannot rot: its JSON
has every field with sane values. Speed targets are measured by `python -m genjax.bench`,
never asserted here."""

import json
import math

import jax
import pytest

from genjax import bench, families
from genjax import data as data_lib
from genjax.perf import decode as decode_lib
from genjax.perf import hlo_profile, registry

COMMON = [
  "batch",
  "train_examples_per_s",
  "flops_per_step",
  "compile_s",
  "first_step_s",
  "matmul_flops_per_s",
  "mfu_measured",
  "peak_memory_bytes",
  "memory_source",
  "pipeline_examples_per_s",
  "pipeline_over_train",
  "checkpoint_blocked_s",
  "checkpoint_total_s",
  "checkpoint_bytes",
]


def check_row(row):
  for key in COMMON:
    assert key in row and row[key] is not None, key
  assert row["flops_per_step"] > 0
  assert 0 < row["mfu_measured"] < 1.5
  assert math.isclose(
    row["mfu_measured"], row["flops_per_step"] / row["train_seconds_per_step"] / row["matmul_flops_per_s"], rel_tol=1e-6
  )
  assert math.isclose(row["train_examples_per_s"], row["batch"] / row["train_seconds_per_step"], rel_tol=1e-6)
  assert 0 < row["compile_s"] < row["first_step_s"]
  assert row["peak_memory_bytes"] > 0
  assert row["pipeline_examples_per_s"] > 0 and row["pipeline_over_train"] > 0
  # The loop is blocked for part of the save at most.
  assert 0 < row["checkpoint_blocked_s"] <= row["checkpoint_total_s"]
  assert row["checkpoint_bytes"] > 0
  assert row["train_last_metrics"] and all(math.isfinite(v) for v in row["train_last_metrics"].values())
  # Where the step's time goes: the profile found the step's operations, every train step has a
  # forward pass, a backward pass and an optimizer update, and the shares add up.
  phases = {p: row[f"profile_{p}"] for p in hlo_profile.PHASES}
  assert math.isclose(sum(phases.values()), 1.0, rel_tol=1e-6)
  assert all(phases[p] > 0 for p in ("forward", "backward", "optimizer")), phases
  assert 0 < row["profile_matmul"] <= 1 and row["profile_op_us"] > 0 and len(row["profile_top_ops"]) == 3
  assert math.isclose(row["time_step_ms"], 1e3 * row["train_seconds_per_step"], rel_tol=1e-6)
  assert math.isclose(row["time_input_ms"], 1e3 * row["batch"] / row["pipeline_examples_per_s"], rel_tol=1e-6)


def test_quick_benchmark_writes_every_field(tmp_path):
  out = tmp_path / "bench.json"
  result = bench.main(["--quick", "--only", "gpt_shakespeare_char", "--out", str(out)])
  saved = json.loads(out.read_text())
  assert saved["quick"] is True and saved["device"]["platform"] == jax.devices()[0].platform
  assert saved["rows"][0]["name"] == "gpt_shakespeare_char" == result["rows"][0]["name"]
  row = saved["rows"][0]
  check_row(row)
  # Text: tokens/s and per-token sampling times at two lengths.
  assert math.isclose(row["train_tokens_per_s"], row["train_examples_per_s"] * 32, rel_tol=1e-6)
  assert row["sample_s_per_token_short"] > 0 and row["sample_s_per_token_long"] > 0
  assert row["sample_long_length"] > row["sample_short_length"]
  # XLA's count agrees with the analytic 6N + attention estimate to within a factor of two
  # (the estimate leaves out layer norms, softmax, the optimizer; XLA counts them).
  per_token = float(row["family_notes"].split("~ ")[1].split()[0])
  assert 0.5 < row["flops_per_step"] / (per_token * 32 * row["batch"]) < 2.0


@pytest.mark.slow
def test_quick_benchmark_images_and_ddim(tmp_path):
  result = bench.main(["--quick", "--only", "ddpm_mnist,dcgan_mnist", "--out", str(tmp_path / "b.json")])
  ddpm, dcgan = result["rows"]
  for row in (ddpm, dcgan):
    check_row(row)
    assert row["sample_s_per_image"] > 0
  assert ddpm["sample_unet_evals"] == 2 * ddpm["sample_ddim_steps"]  # guided: two evaluations per step
  assert ddpm["sample_s_per_step"] > 0


@pytest.mark.parametrize("name", sorted(registry.BENCHMARKS))
def test_every_standard_config_builds(name):
  # Every benchmarked config loads and its family builds on the synthetic data description,
  # in full and quick sizes (no compilation): an experiments/ file that changes shape breaks here.
  for quick in (False, True):
    exp = registry.experiment_for(name, quick=quick, on_cpu=True)
    info = registry.BENCHMARKS[name].info or data_lib.describe(exp.data)
    family = families.build(exp, info)
    batch = registry.synthetic_batch(info, exp.train.batch_size)
    key = "tokens" if info.kind == "text" else "image"
    assert batch[key].shape[0] == exp.train.batch_size
    assert exp.parallel.num_devices == 1 and exp.train.steps_per_call == 1
    assert family.train_step is not None


def test_unknown_benchmark_is_refused():
  with pytest.raises(SystemExit):
    bench.main(["--only", "gpt3"])


@pytest.mark.slow
def test_decode_benchmark_sets_folder_decoding_beside_the_64x64_steps(tmp_path):
  out = tmp_path / "decode.json"
  result = bench.main(["--decode", "--quick", "--out", str(out)])
  saved = json.loads(out.read_text())
  decode = [r for r in saved["rows"] if r["what"].startswith("decode")]
  steps = [r for r in saved["rows"] if r["what"].startswith("train step")]
  assert decode and len(steps) == len(decode_lib.DECODE_VERSUS)
  assert all(r["images_per_s"] > 0 for r in saved["rows"])
  # images/s of a step is its batch over its seconds
  assert all(math.isclose(r["images_per_s"], 8 / r["seconds_per_step"], rel_tol=1e-6) for r in steps)
  fastest = max(r["images_per_s"] for r in steps)
  assert math.isclose(result["decode_over_fastest_step"], min(r["images_per_s"] for r in decode) / fastest)


def test_nanogpt_comparison_refuses_a_folder_that_is_not_a_clone(tmp_path, capsys):
  """--nanogpt names what is missing (the clone, then its prepared data) in one paragraph, exit 2."""
  with pytest.raises(SystemExit) as exit_info:
    bench.main(["--nanogpt", str(tmp_path)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "is not a nanoGPT checkout" in " ".join(err.split()) and "Traceback" not in err
  (tmp_path / "train.py").write_text("")
  with pytest.raises(SystemExit):
    bench.main(["--nanogpt", str(tmp_path)])
  assert "prepare.py" in capsys.readouterr().err


def test_startup_refuses_a_run_of_no_steps(capsys):
  with pytest.raises(SystemExit) as stop:
    bench.main(["--startup", "--startup_steps", "0"])
  assert stop.value.code == 2 and "--startup_steps=0 must be a positive" in capsys.readouterr().err


def _print_config(argv, capsys):
  from genjax import train

  train.main([*argv, "--print_config", "--no_compilation_cache"])
  return capsys.readouterr().out


def test_print_config_counts_what_the_model_holds_and_what_a_step_costs(capsys):
  """--print_config on the default VAE (an MLP on 8x8 digits, AdamW without EMA) and on a small
  GPT: the resolved config as JSON with the overrides applied, the parameter count of the
  architecture worked out by hand, the state's bytes (parameters + Adam's two moments, float32),
  and XLA's FLOPs per step within 15% of 6 x parameters x examples for the MLP (run 5 steps per
  call) and of nanoGPT's
  6N + 12 L d T per token for the GPT. Nothing is trained: no workdir is written."""
  # Five steps per call (a lax.scan over the step, whose body XLA counts once): still one step's FLOPs.
  argv = ["--config.train.batch_size=50", "--config.parallel.num_devices=1", "--config.train.steps_per_call=5"]
  out = _print_config(argv, capsys)
  config_json, _, summary = out.partition("\n}\n")
  config = json.loads(config_json + "\n}")
  assert config["train"]["batch_size"] == 50 and config["family"] == "vae"
  figures = dict(line.split(None, 1) for line in summary.strip().splitlines() if line[:1] != " ")
  from genjax import config as config_lib

  vae = config_lib.load_config_file("experiments/default.py").model
  dims = [64, *vae.hidden, 2 * vae.latents[0]]  # encoder: 8x8 pixels -> hidden -> (mean, log std)
  dec = [vae.latents[0], *reversed(vae.hidden), 2 * 64]  # decoder: latent -> hidden -> (mean, log scale)
  n = sum(a * b + b for a, b in zip(dims, dims[1:])) + sum(a * b + b for a, b in zip(dec, dec[1:]))
  assert figures["parameters"].startswith(f"{n:,} ")
  assert figures["state"].startswith(f"{3 * 4 * n / 2**20:.2f} MiB")
  flops = float(figures["train"].split()[1])
  assert abs(flops / (6 * n * 50) - 1) < 0.15
  assert "(vae, Config)" in figures["experiment"] and "MiB per device for the compiled step" in figures["memory"]

  out = _print_config(
    [
      "--config",
      "experiments/gpt_shakespeare_char.py:cpu",
      "--config.parallel.num_devices=1",
      "--config.parallel.cpu_devices=None",
      "--config.train.batch_size=4",
    ],
    capsys,
  )
  summary = out.partition("\n}\n")[2]
  figures = dict(line.split(None, 1) for line in summary.strip().splitlines())
  gpt = config_lib.load_config_file("experiments/gpt_shakespeare_char.py:cpu")
  L, d, T, V = gpt.model.num_layers, gpt.model.width, gpt.data.block_size, 65
  assert not gpt.model.use_bias  # nanoGPT's bias=False: LayerNorms with a scale only, linears without bias
  n = V * d + T * d + L * (12 * d * d + 2 * d) + d  # tied embeddings, 4 matrices per block, LayerNorm scales
  assert figures["parameters"].startswith(f"{n:,} ")
  flops = float(figures["train"].split()[1])
  assert abs(flops / ((6 * n + 12 * L * d * T) * T * 4) - 1) < 0.15


def test_a_latent_model_is_benchmarked_on_its_latents(tmp_path):
  """dit_xl2 runs DiT-XL/2's step on synthetic 32x32x4 SD latents, without the autoencoder
  (whose weights a benchmark machine need not have): one quick row with its figures."""
  out = tmp_path / "dit.json"
  bench.main(["--quick", "--only", "dit_xl2", "--no-loop", "--out", str(out)])
  (row,) = json.loads(out.read_text())["rows"]
  assert row["name"] == "dit_xl2" and row["train_examples_per_s"] > 0 and row["flops_per_step"] > 0
  exp = registry.experiment_for("dit_xl2", quick=False, on_cpu=False)
  assert exp.model.autoencoder is None and exp.model.hidden_size == 1152 and exp.train.batch_size == 256
