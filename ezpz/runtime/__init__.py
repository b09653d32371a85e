"""Helpers a training script calls on every rank: setup, wrapping, metrics, reports, profiling.

Nothing here imports the launch side (``ezpz.model``, ``ezpz.schedulers``,
``ezpz.plugins``, ``ezpz.launch``); torch, mpi4py and wandb load only inside
the functions that need them.
"""
