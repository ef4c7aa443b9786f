"""The one training loop and what it needs: train state, optimizers, parallelism, checkpoints.

Families import `genjax.train.state` and `genjax.train.optim` (pure helpers); only the command
line entry points import `genjax.train.loop`.
"""
