"""The trainer, on top of the families and the toolkit: the one loop (loop.py), a run's folder
(workdir.py) and what a person sees (writers.py). `python -m genjax.train` drives it; nothing
below it imports it."""
