"""``ezpz submit``: a batch script (PBS, Slurm, or a plugin scheduler's) from the same spec as ``ezpz launch``.

The script is rendered from three things:

* the **request**: nodes, walltime, queue, account, filesystems, job name
  (:class:`~ezpz.model.batch.SubmitRequest`);
* the template's ``[submit]`` table: the site's queues and their limits,
  whether an account is required, default filesystems, the environment
  set-up lines (:class:`~ezpz.model.batch.SubmitSettings`);
* the **launch line**: ``ezpz launch [the same launch options] -- CMD``,
  which runs inside the job and resolves the allocation there.

:func:`render_script` is pure (same inputs, same text);
:func:`check_request` raises a one-line :class:`~ezpz.errors.SpecError` for
bad input before anything is written.  :func:`plan_submit` resolves the spec
with :func:`ezpz.launch.resolve.choose`, the resolver ``ezpz launch`` uses
(it may look for ``qsub`` / ``sbatch`` on ``PATH`` to tell the batch system);
:func:`submit_script` hands the script to the scheduler's submit command.
The scheduler's own lines (``#PBS``, ``#SBATCH``) come from its adapter's
:meth:`~ezpz.schedulers.base.Scheduler.batch_header`.

The package's modules, one job each: :mod:`ezpz.submit.request` (what a job
may ask for: the warning signal, the site's rules), :mod:`ezpz.submit.script`
(rendering and submitting the script), :mod:`ezpz.submit.plan` (from the
launch layers to the script).
"""

from __future__ import annotations

from ezpz.submit.plan import plan_submit
from ezpz.submit.request import DEFAULT_MAX_REQUEUES, DEFAULT_WARNING, WARNING_SIGNALS, check_request, parse_signal
from ezpz.submit.script import render_script, submit_script

__all__ = [
    "DEFAULT_MAX_REQUEUES",
    "DEFAULT_WARNING",
    "WARNING_SIGNALS",
    "check_request",
    "parse_signal",
    "plan_submit",
    "render_script",
    "submit_script",
]
