"""Scheduler adapters: ``pbs``, ``slurm``, ``local`` (built-in plugins) and any from plugins."""
