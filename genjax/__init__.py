"""genjax: generative models (GANs, VAEs, autoregressive transformers, diffusion) as pure JAX
functions, trained by one sharded, checkpointed loop."""

__version__ = "0.1.0"
