"""Flow matching on CIFAR-10, unconditional: the flow-matching authors' own CIFAR-10 recipe
(Lipman et al., facebookresearch/flow_matching, examples/image; the code released with "Flow
Matching Guide and Code", Lipman et al. 2024).

Command:   python -m genjax.train --config experiments/flow_cifar10.py --workdir runs/flow_cifar10
           (needs the CIFAR-10 archive TFDS downloads, cifar-10-binary.tar.gz, in
           --config.data.manual_dir or $GENJAX_MANUAL_DIR: not in this repository)
           then  python -m genjax.evaluate --workdir runs/flow_cifar10 --metrics fd --num_samples 50000
                 python -m genjax.evaluate --workdir runs/flow_cifar10        (bits/dim, ODE likelihood)
Hardware:  the reference trained on 8 GPUs (batch 64 each) for 3,000 epochs. Not run here (no
           CIFAR-10 offline, no accelerator); tests/families/test_cifar10_recipes.py checks that its
           network has the parameter count of the reference's UNetModel (examples/image/models,
           instantiated in PyTorch) and that the first training steps run with tiny overrides.
Published: FID 2.07 after 1,800 epochs, 50 Heun steps on EDM's time grid, EMA weights
           (flow_matching examples/image/README.md, "Results", the Cifar10 row). The 2023 paper's
           own CIFAR-10 model (Lipman et al. 2023, Table 1: 2.99 bits/dim for FM with the OT path)
           was not released as code; this is the authors' public recipe.

The recipe, from examples/image (model_configs.py "cifar10", train_arg_parser.py, the README's
command, training/train_loop.py): the ADM U-Net of Dhariwal and Nichol 2021 (openai/
guided-diffusion's UNetModel) with 128 base channels, multipliers (2, 2, 2), 4 residual blocks per
level, one attention head at 16x16, scale-shift norm, dropout 0.3, resampling without
convolutions and outside the residual blocks, its time embedding taking t in [0, 1] itself; the
conditional OT path with sigma_min = 0 (CondOTProbPath), velocity MSE; "skewed" training times
t = 1 / (1 + sigma) with ln sigma ~ N(-1.2, 1.2^2), which is the logit-normal of logit mean 1.2
and std 1.2; data in [-1, 1] with random horizontal flips; AdamW with learning rate 1e-4, betas
(0.9, 0.95), PyTorch's default eps 1e-8 and weight decay 0.01, constant learning rate, no
gradient clipping; batch 512 (8 x 64); an EMA of decay 0.9999 warmed up as min(0.9999,
(1 + n) / (10 + n)) (models/ema.py; genjax's ema_warmup is the same); 1,800 epochs of 97 steps
(DistributedSampler, drop_last) = 174,600 steps; samples by Heun's method (torchdiffeq's heun2) on
EDM's time grid of 50 noise levels (training/edm_time_discretization.py), i.e. 50 steps and 100
network evaluations.

Where genjax differs: PyTorch's AdamW decays every parameter, genjax's decays matrices and
kernels only (genjax.core.optim.default_decay_mask); the reference draws its times from torch's
generator, genjax from per-example JAX keys.
"""

from genjax import config as C
from genjax.families import diffusion

BATCH = 512
STEPS_PER_EPOCH = 50_000 // 8 // 64  # each of 8 GPUs: 6,250 images, batches of 64, the last dropped
EPOCHS = 1_800


def get_config(arg=None) -> C.Experiment:
  if arg is not None:
    raise ValueError(f"experiments/flow_cifar10.py takes no argument, got {arg!r}.")
  model = diffusion.Config(
    backbone="adm",
    ch=128,
    ch_mult=(2, 2, 2),
    num_res_blocks=4,
    attn_resolutions=(16,),
    dropout=0.3,
    num_heads=1,
    num_head_channels=None,
    resblock_updown=False,
    conv_resample=False,
    formulation="flow",
    flow_sigma_min=0.0,
    flow_time_sampling="logit_normal",
    flow_logit_mean=1.2,
    flow_logit_std=1.2,
    flow_time_scale=1.0,
    flow_time_grid="edm",
    sampler="heun",
    sample_steps=50,
    eval_max_examples=1000,
  )
  return C.Experiment(
    name="flow_cifar10",
    family="diffusion",
    model=model,
    data=C.Data(name="cifar10", flip=True),
    optim=C.Optim(name="adamw", learning_rate=1e-4, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.01, ema_decay=0.9999),
    train=C.Train(
      steps=STEPS_PER_EPOCH * EPOCHS,
      batch_size=BATCH,
      log_every=100,
      eval_every=10_000,
      checkpoint_every=10_000,
      compute_dtype="float32",
    ),
    eval=C.Eval(num_batches=4, batch_size=BATCH, num_samples=64),
  )
