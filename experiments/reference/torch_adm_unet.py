"""The flow-matching authors' ADM U-Net (facebookresearch/flow_matching,
examples/image/models/unet.py) in PyTorch, for checking genjax.nn.adm_unet against it. For
comparison only: nothing in genjax imports it; it needs torch and a checkout of flow_matching (its
examples/image folder goes on sys.path; the checkout is not installed).

    python experiments/reference/torch_adm_unet.py --flow_matching_dir CHECKOUT --out DIR [--seed 0]

writes DIR/cases.json: the parameter counts of the reference's "cifar10" and "imagenet" configs
(model_configs.py) and, for each small case, its UNetModel arguments and parameter count; and for
each small case DIR/CASE_weights.npz (the state_dict, keyed by its names) and DIR/CASE_io.npz
(inputs x [NCHW], t, label and the eval-mode outputs). Every zero-initialised layer is redrawn and
the GroupNorm affines perturbed, so the outputs depend on every parameter.
tests/nn/test_adm_unet.py runs it and compares genjax's outputs on the same weights.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

# Small configs covering every option of the module (16x16 images; attention_resolutions are
# downsample rates, as the reference counts them).
SMALL_CASES = {
  # The cifar10 config's options, scaled down: average pooling / nearest resampling, one head.
  "small_cifar_like": dict(
    in_channels=3,
    model_channels=32,
    out_channels=3,
    num_res_blocks=1,
    attention_resolutions=[2],
    dropout=0.3,
    channel_mult=[1, 2],
    conv_resample=False,
    num_heads=1,
    num_head_channels=-1,
    use_scale_shift_norm=True,
    resblock_updown=False,
    use_new_attention_order=True,
  ),
  # The imagenet config's options: residual up/down blocks, fixed-width heads, class labels.
  "small_updown_labels": dict(
    in_channels=3,
    model_channels=32,
    out_channels=3,
    num_res_blocks=1,
    attention_resolutions=[2],
    dropout=0.1,
    channel_mult=[1, 2],
    conv_resample=True,
    num_classes=10,
    num_heads=4,
    num_head_channels=16,
    use_scale_shift_norm=True,
    resblock_updown=True,
    use_new_attention_order=True,
  ),
  # Learned (conv) resampling, additive time conditioning, two heads in guided-diffusion's legacy
  # qkv order, three levels, another output width.
  "small_conv_resample_legacy": dict(
    in_channels=3,
    model_channels=32,
    out_channels=6,
    num_res_blocks=2,
    attention_resolutions=[2, 4],
    dropout=0.0,
    channel_mult=[1, 2, 2],
    conv_resample=True,
    num_heads=2,
    num_head_channels=-1,
    use_scale_shift_norm=False,
    resblock_updown=False,
    use_new_attention_order=False,
  ),
}


def perturb(model, seed: int):
  """Redraws the zero-initialised (zero_module) layers with PyTorch's default law and perturbs
  the GroupNorm scales and biases and the null label row, so no parameter is inert."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.startswith("label_emb"):
        p[-1].normal_(0.0, 1.0, generator=g)
      elif p.ndim == 1 and (
        "in_layers.0" in name or "out_layers.0" in name or ".norm." in name or name.startswith("out.0")
      ):
        p.add_(torch.randn(p.shape, generator=g) * 0.2)
      elif not p.any():
        fan_in = math.prod(p.shape[1:]) if p.ndim > 1 else model_fan_in(model, name)
        bound = 1.0 / math.sqrt(fan_in)
        p.uniform_(-bound, bound, generator=g)


def model_fan_in(model, bias_name: str) -> int:
  weight = dict(model.named_parameters())[bias_name[: -len("bias")] + "weight"]
  return math.prod(weight.shape[1:])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--flow_matching_dir", default=os.environ.get("GENJAX_FLOW_MATCHING_DIR"))
  parser.add_argument("--out", required=True)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  if not args.flow_matching_dir:
    sys.exit("pass --flow_matching_dir or set GENJAX_FLOW_MATCHING_DIR to a facebookresearch/flow_matching checkout")
  sys.path.insert(0, os.path.join(args.flow_matching_dir, "examples", "image"))
  from models.model_configs import MODEL_CONFIGS  # noqa: E402  (the checkout's examples/image)
  from models.unet import UNetModel  # noqa: E402

  os.makedirs(args.out, exist_ok=True)
  torch.manual_seed(args.seed)
  count = lambda m: sum(p.numel() for p in m.parameters())
  with torch.device("meta"):  # shapes only: nothing is allocated or initialised
    summary = {name: {"num_params": count(UNetModel(**MODEL_CONFIGS[name]))} for name in ("cifar10", "imagenet")}
  for case, config in SMALL_CASES.items():
    model = UNetModel(**config)
    perturb(model, args.seed + 1)
    model.eval()
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((3, config["in_channels"], 16, 16)).astype(np.float32)
    t = np.array([0.0, 0.37, 1.0], np.float32)
    io = {"x": x, "t": t}
    extra = {}
    if config.get("num_classes"):
      io["label"] = np.array([0, 7, config["num_classes"]], np.int64)  # the last is the null label
      extra = {"label": torch.from_numpy(io["label"])}
    with torch.no_grad():
      io["out"] = model(torch.from_numpy(x), torch.from_numpy(t), dict(extra)).numpy()
      if config.get("num_classes"):  # no label given: the reference uses the null label
        io["out_no_label"] = model(torch.from_numpy(x), torch.from_numpy(t), {}).numpy()
    np.savez(os.path.join(args.out, f"{case}_weights.npz"), **{k: v.numpy() for k, v in model.state_dict().items()})
    np.savez(os.path.join(args.out, f"{case}_io.npz"), **io)
    summary[case] = {"config": config, "num_params": count(model)}
    print(f"{case}: {count(model)} parameters, output std {io['out'].std():.3f}")
  with open(os.path.join(args.out, "cases.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print(f"cifar10 {summary['cifar10']['num_params']} parameters, imagenet {summary['imagenet']['num_params']}")


if __name__ == "__main__":
  main()
