"""A convolutional VAE on Fashion-MNIST (28x28 grey) with a discretized logistic likelihood over the
256 grey levels, so its test NLL is a true probability: nats per image and bits per dimension.

Results:   experiments/RESULTS.md, the "Not yet measured" table.
Command:   python -m genjax.train --config experiments/vae_conv_fashion_mnist.py --workdir runs/vae_fashion
           python -m genjax.evaluate --workdir runs/vae_fashion     (test NLL, k=5000, 10000 images)
           :cifar10 trains the same model on CIFAR-10 (32x32 colour).
Hardware:  one accelerator; a 2-core CPU runs it, slowly (tens of steps per second).
Runtime:   50000 steps of batch 128 (~107 epochs).
Result:    not measured yet; there is no published number for this exact model. For scale,
           a VAE's bits/dim on 8-bit images sits well above autoregressive models; report
           nats per image and bits_per_dim from `python -m genjax.evaluate`.

Model: encoder two stride-2 4x4 convolutions (32, 64 channels, ReLU), a 256-unit dense layer, a
32-D Gaussian latent; the decoder mirrors it with transposed convolutions and predicts a mean and
a log-scale per pixel. Adam 1e-3 with a cosine decay to 1e-4 and 1000 warm-up steps.
"""

from genjax.config import Data, Eval, Experiment, Optim, Train
from genjax.families import vae


def get_config(arg: str = "fashion_mnist") -> Experiment:
  if arg not in ("fashion_mnist", "cifar10"):
    raise ValueError(f"experiments/vae_conv_fashion_mnist.py takes :fashion_mnist or :cifar10, got {arg!r}.")
  wide = arg == "cifar10"
  return Experiment(
    name=f"vae_conv_{arg}",
    family="vae",
    model=vae.Config(
      architecture="conv",
      conv_channels=(64, 128) if wide else (32, 64),
      hidden=(512,) if wide else (256,),
      latents=(128,) if wide else (32,),
      activation="relu",
      likelihood="logistic",
      num_bins=256,
      scale="output",
      eval_samples=5000,
      eval_chunk=100,
    ),
    data=Data(name=arg),
    optim=Optim(
      name="adam",
      learning_rate=1e-3,
      schedule="warmup_cosine",
      warmup_steps=1000,
      end_lr_ratio=0.1,
      grad_clip_norm=100.0,
    ),
    train=Train(steps=50000, batch_size=128, log_every=500, eval_every=5000, checkpoint_every=5000),
    eval=Eval(num_batches=4, batch_size=128, num_samples=64),
  )
