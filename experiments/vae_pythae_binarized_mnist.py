"""pythae's reproduced VAE (Chadebec et al., "Pythae: Unifying Generative Autoencoders in Python",
NeurIPS 2022 Datasets and Benchmarks; github.com/clementchadebec/benchmark_VAE) on the fixed
binarization of MNIST: the "VAE | Binary MNIST | NLL (200 IS) | 89.78 (0.01) | 89.9" row of its
examples/scripts/reproducibility/README.md, reference value from Rezende & Mohamed 2015
(arXiv:1505.05770, Table 2, the VAE without flows).

Source:    examples/scripts/reproducibility/vae.py of that repository: encoder 784-400 (ReLU) with
           two linear heads for the mean and log-variance of a 40-d Gaussian, decoder 40-400 (ReLU)
           -784 (sigmoid), Bernoulli likelihood ("bce"), ELBO with one sample; Adam (pythae's
           BaseTrainerConfig defaults: betas 0.9/0.999, eps 1e-8) at 1e-4, batch 100, 500 epochs,
           MultiStepLR milestones (200, 350, 500, 750, 1000) epochs with gamma 10^(-1/5), stepped
           once per epoch (so 1e-4, then x10^-0.2 at epoch 200 and again at 350); the final
           model's test NLL with 200 importance samples, 5 rounds (mean and std).
           Data: binarized_mnist_{train,valid,test}.amat, which is TFDS `binarized_mnist` (50000
           train, 10000 validation, 10000 test).
Differences: genjax's encoder has one dense head of 80 outputs (mean, log-std) where pythae has two
           of 40 (mean, log-variance): the same parameters and the same function class; the weights
           start from flax's initialisers (LeCun normal), pythae's from PyTorch's.
Command:   python -m genjax.train --config experiments/vae_pythae_binarized_mnist.py --workdir W
           python -m genjax.evaluate --workdir W --seed S        (S = 0..4: the 5 rounds)
Hardware:  a 2-core CPU; measured runs in experiments/RESULTS.md.
Runtime:   250,000 steps of batch 100 (500 epochs of 500 steps).
Result:    experiments/RESULTS.md, the pythae rows.
"""

from genjax.config import Data, Eval, Experiment, Optim, Train
from genjax.families import vae

TRAIN_EXAMPLES = 50000
BATCH = 100
STEPS_PER_EPOCH = TRAIN_EXAMPLES // BATCH  # 500
EPOCHS = 500


def get_config(arg: str = "") -> Experiment:
  if arg:
    raise ValueError(f"experiments/vae_pythae_binarized_mnist.py takes no argument after ':', got {arg!r}.")
  milestones = [m for m in (200, 350, 500, 750, 1000) if m < EPOCHS]  # MultiStepLR's, in epochs
  return Experiment(
    name="vae_pythae_binarized_mnist",
    family="vae",
    model=vae.Config(
      architecture="mlp",
      hidden=(400,),
      latents=(40,),
      activation="relu",
      likelihood="bernoulli",
      objective="elbo",
      train_samples=1,
      eval_samples=200,  # pythae's get_nll(n_samples=200)
      eval_chunk=200,
      eval_step_samples=50,
    ),
    data=Data(name="binarized_mnist", binarize="none"),
    optim=Optim(
      name="adam",
      learning_rate=1e-4,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      schedule="piecewise",
      boundaries=tuple(m * STEPS_PER_EPOCH for m in milestones),
      scales=(10 ** (-1 / 5),) * len(milestones),
    ),
    train=Train(
      steps=EPOCHS * STEPS_PER_EPOCH,
      batch_size=BATCH,
      log_every=STEPS_PER_EPOCH,
      eval_every=50 * STEPS_PER_EPOCH,
      checkpoint_every=10 * STEPS_PER_EPOCH,
      steps_per_call=100,
    ),
    eval=Eval(num_batches=10, batch_size=100, num_samples=64),
  )
