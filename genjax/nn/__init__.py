"""Flax building blocks shared by the families: attention and transformer blocks, the DDPM U-Net,
timestep embeddings, masked convolutions. Nothing here imports a family."""
