"""From the launch layers to the batch script: ``ezpz submit``'s one call (see :mod:`ezpz.submit`).

:func:`plan_submit` resolves the spec with :func:`ezpz.launch.resolve.choose`,
the resolver ``ezpz launch`` uses, and renders the script with
:func:`ezpz.submit.script.render_script`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ezpz.errors import SpecError, plural
from ezpz.launch.resolve import Choice, choose
from ezpz.model.batch import BatchScript, SubmitRequest, parse_walltime, submit_settings
from ezpz.model.spec import LaunchSpec, Layer
from ezpz.model.template import Template
from ezpz.submit.request import DEFAULT_MAX_REQUEUES, DEFAULT_WARNING, parse_signal
from ezpz.submit.script import render_script

__all__ = ["plan_submit"]


def _nodes_needed(spec: LaunchSpec) -> int | None:
    """Nodes the launch options ask for (-nh, or -n / -ppn), if they say."""
    if spec.nhosts is not None:
        return spec.nhosts
    if spec.np is not None and spec.ppn is not None:
        return spec.np // spec.ppn
    return None


def _ranks_per_node(spec: LaunchSpec, nodes: int) -> int | None:
    """Ranks per node the launch options ask for on ``nodes`` nodes, if they say."""
    if spec.ppn is not None:
        return spec.ppn
    if spec.np is not None and spec.np % nodes == 0:
        return spec.np // nodes
    return None


def plan_submit(
    layers: Sequence[Layer],
    launch_options: Sequence[str],
    *,
    nodes: int | None,
    time: str | None,
    queue: str | None = None,
    account: str | None = None,
    filesystems: str | None = None,
    job_name: str = "ezpz",
    output: str | None = None,
    signal: str | None = None,
    requeue: bool = False,
    max_requeues: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> BatchScript:
    """Resolve template and scheduler, check the request, and render the batch script.

    ``layers`` are the launch spec's layers (config files, then ``flags``), as
    for ``ezpz launch``; the ``EZPZ_*`` environment layer is added here.
    ``launch_options`` are the launch options as the user wrote them; they are
    repeated on the ``ezpz launch`` line inside the script.  ``nodes``
    defaults to what ``-nh`` (or ``-n`` / ``-ppn``) asks for, else 1.
    ``signal`` (``SIG@SECONDS``) asks for the warning; ``requeue`` requeues
    the job after the ranks stopped at it, at most ``max_requeues`` times
    (default :data:`DEFAULT_MAX_REQUEUES`; giving it implies ``requeue``),
    with the warning :data:`DEFAULT_WARNING` when ``signal`` is not given.
    """
    choice = choose(layers, environ, batch=True)
    spec = choice.spec
    time = _check_submittable(spec, time)
    count = _node_count(spec, nodes)
    requeues = _requeues(requeue, max_requeues)
    request = SubmitRequest(
        nodes=count,
        walltime=parse_walltime(time),
        queue=queue,
        account=account,
        filesystems=filesystems,
        job_name=job_name,
        output=output,
        warning=parse_signal(signal) if signal else (parse_signal(DEFAULT_WARNING) if requeues else None),
        requeue=requeues,
    )
    return _render(choice, request, launch_options)


def _check_submittable(spec: LaunchSpec, time: str | None) -> str:
    """Return the walltime as given; raise when there is no command to submit or no walltime."""
    if not spec.command:
        raise SpecError(
            "no command to submit", None, "put it after --: ezpz submit --nodes 2 --time 01:00:00 -- python train.py"
        )
    if time is None:
        raise SpecError("no walltime given", None, "pass --time [[HH:]MM:]SS, e.g. --time 01:00:00")
    return time


def _render(choice: Choice, request: SubmitRequest, launch_options: Sequence[str]) -> BatchScript:
    """The script for ``request``, running ``ezpz launch [launch_options] -- CMD`` inside the job."""
    spec, template, count = choice.spec, choice.template, request.nodes
    accel = spec.accelerators_per_node
    return render_script(
        choice.adapter,
        request,
        submit_settings(template),
        ["ezpz", "launch", *launch_options, *_template_flag(spec, template), "--", *spec.command],
        template=template.name if template else None,
        ranks_per_node=_ranks_per_node(spec, count) if count >= 1 else None,
        gpus_per_node=accel if accel else None,
    )


def _node_count(spec: LaunchSpec, nodes: int | None) -> int:
    """The job's nodes: ``nodes``, else what the launch options need, else 1; raise when ``nodes`` is too few."""
    needed = _nodes_needed(spec)
    count = nodes if nodes is not None else (needed or 1)
    if needed is not None and count >= 1 and needed > count:
        raise SpecError(
            f"the launch options need {plural(needed, 'node')} but the job asks for {count}",
            f"--nodes {count}",
            f"pass --nodes {needed} or more, or fewer hosts to ezpz launch",
        )
    return count


def _requeues(requeue: bool, max_requeues: int | None) -> int:
    """How many times the job may requeue (0: never); giving ``max_requeues`` implies ``requeue``."""
    if max_requeues is not None and not 1 <= max_requeues <= 100:
        raise SpecError("--max-requeues must be 1–100", max_requeues, "or leave it out for 3 (with --requeue)")
    return (max_requeues or DEFAULT_MAX_REQUEUES) if requeue or max_requeues is not None else 0


def _template_flag(spec: LaunchSpec, template: Template | None) -> list[str]:
    """``-t TEMPLATE`` for the launch line inside the job, unless the flags already name it."""
    # The job must use the template this script was written for, even when it
    # came from EZPZ_TEMPLATE or the host name rather than a flag (PBS does
    # not pass the environment into the job).
    if template is not None and spec.provenance.get("template") != "flags":
        return ["-t", template.path if str(spec.template or "").endswith(".toml") else template.name]
    return []
