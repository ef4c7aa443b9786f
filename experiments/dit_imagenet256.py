"""DiT-XL/2 on ImageNet 256x256 in Stable Diffusion's latent space, as Peebles and Xie 2023
("Scalable Diffusion Models with Transformers") train it.

Command:   python -m genjax.train --config experiments/dit_imagenet256.py --workdir runs/dit_xl2 \
               --config.data.path=/path/to/imagenet/train \
               --config.model.autoencoder=/path/to/sd-vae-ft-ema
           (ImageNet's training images in one folder per class, and Stable Diffusion's KL-f8
           autoencoder as diffusers saves it, stabilityai/sd-vae-ft-ema: a folder with config.json
           and diffusion_pytorch_model.safetensors, or the .safetensors file alone; neither is in
           this repository and neither can be downloaded here. Without them the run stops before
           compiling and says which is missing.)
           then  python -m genjax.evaluate --workdir runs/dit_xl2 --metrics fd --num_samples 50000
           (also :S2, :B2, :L2 and the patch sizes 4 and 8, e.g. :XL4, for the paper's other models)
Hardware:  the paper trained XL/2 on TPU v3-256 pods (7M steps at batch 256). Not run here (no
           ImageNet, no SD weights, no accelerator): tests/families/test_dit_imagenet256.py checks
           that each model has the parameter count of the reference code (facebookresearch/DiT
           models.py instantiated in PyTorch: XL/2 674,834,720 trainable, the frozen positional
           table aside) and that the first training steps run with tiny overrides; the GPU suite
           times its train step (genjax.perf.gpu_suite).
Published: FID-50K 2.27 for DiT-XL/2 with classifier-free guidance 1.5 after 7M steps (250 DDPM
           steps; Peebles and Xie 2023, Table 4), 9.62 without guidance.

The paper's setup (section 4 and facebookresearch/DiT train.py, models.py, diffusion/__init__.py):
images center-cropped to 256x256 with random horizontal flips, encoded by SD's KL-f8 VAE into
32x32x4 latents scaled by 0.18215 (a posterior sample, as train.py's
`vae.encode(x).latent_dist.sample().mul_(0.18215)`); DiT-XL/2 (width 1152, 28 blocks, 16 heads,
patch 2, adaLN-Zero, 1000 classes with 10% label dropout for guidance); the linear schedule of
1000 steps (1e-4 to 0.02), epsilon prediction with learned variances trained by the hybrid loss
(learn_sigma, rescale_learned_sigmas); AdamW with learning rate 1e-4, no weight decay, constant;
batch 256; EMA of decay 0.9999 updated every step from the start (no warm-up); samples by 250
respaced DDPM steps with guidance 1.5.

Where genjax differs: DiT's forward_with_cfg guides only the first three of the four latent
channels (a known quirk of its code); genjax guides all four. ADM's center_crop_arr resizes with
a box filter before a bicubic one; genjax resizes once with Pillow's bicubic filter.
"""

from genjax import config as C
from genjax.families import diffusion
from genjax.nn.dit import DIT_CONFIGS

SD_SCALE = 0.18215


def get_config(arg=None) -> C.Experiment:
  arg = arg or "XL2"
  name = f"DiT-{arg[:-1]}/{arg[-1]}"
  if name not in DIT_CONFIGS:
    raise ValueError(
      f"experiments/dit_imagenet256.py takes a model as S2, B4, XL2, ... ({', '.join(DIT_CONFIGS)}), got {arg!r}."
    )
  size = DIT_CONFIGS[name]
  model = diffusion.Config(
    backbone="dit",
    patch_size=size["patch_size"],
    hidden_size=size["hidden_size"],
    depth=size["depth"],
    num_heads=size["num_heads"],
    mlp_ratio=4.0,
    autoencoder="sd-vae-ft-ema",  # SD's KL-f8 as diffusers saves it; --config.model.autoencoder=PATH
    latent_scale=SD_SCALE,
    schedule="linear",
    timesteps=1000,
    beta_start=1e-4,
    beta_end=0.02,
    prediction="eps",
    loss="simple",
    variance="learned_range",
    clip_denoised=False,  # latents are not bounded to [-1, 1]
    class_conditional=True,
    label_dropout=0.1,
    guidance_scale=1.5,
    sampler="ddpm",
    sample_steps=250,
  )
  return C.Experiment(
    name=f"dit_imagenet256_{arg.lower()}",
    family="diffusion",
    model=model,
    # every image trains (DiT holds none out); the periodic loss is read on 10,000 of them
    data=C.Data(name="folder", image_size=256, channels=3, flip=True, train_split="all", eval_split="all[:10000]"),
    optim=C.Optim(name="adamw", learning_rate=1e-4, weight_decay=0.0, ema_decay=0.9999, ema_warmup=False),
    train=C.Train(steps=7_000_000, batch_size=256, log_every=100, eval_every=50_000, checkpoint_every=50_000),
    eval=C.Eval(num_batches=1, batch_size=256, num_samples=64),
  )
