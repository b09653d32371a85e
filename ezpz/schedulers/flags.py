"""Options the MPI launchers take, and how many values each one reads.

``ezpz launch`` hands every option it does not know to the launcher.  To
split ``ezpz launch --depth 8 --dry-run python x.py`` without ``--`` it must
know that ``--depth`` reads one value (``8``) and ``--no-vni`` none; and to
tell a mistyped ezpz option (``--dryrun``) from a real launcher option that
merely looks like one of ours (srun's ``--gpu-bind`` beside ``--cpu-bind``,
hydra's ``-hosts`` beside ``--nhosts``) it must know the launchers' names.

Names are stored without leading dashes: MPICH hydra takes ``-hosts`` and
``--hosts`` alike, and every launcher here takes ``--name=value``.  A name
whose arity differs between launchers (``-q``: Open MPI's quiet switch,
srun's ``--qos`` value) is left out, so it stays ambiguous and ezpz asks.
An exact spelling of one of ezpz's own options (``-n``, ``--ppn``,
``--hostfile``, ``--launcher``) is ezpz's, whatever is listed here; hydra's
``-launcher fork`` is listed because only ``--launcher`` is ezpz's.
"""

from __future__ import annotations

__all__ = ["LAUNCHER_OPTIONS", "option_arity"]


def _words(**by_launcher: str) -> list[str]:
    """The option names of every launcher, each given as one space-separated string."""
    return [name for names in by_launcher.values() for name in names.split()]


#: Options that read no value.
_SWITCHES = _words(
    hydra="genvall genvnone envall envnone enable-x disable-x disable-auto-cleanup disable-hostname-propagation "
    "hybrid-hosts info prepend-rank print-all-exitcodes profile skip-launch-node verbose memory-alloc-kinds",
    pals="no-vni line-buffer label spindle transfer abort-on-failure no-abort-on-failure exclusive",
    openmpi="report-bindings display-map display-allocation tag-output timestamp-output merge-stderr-to-stdout "
    "allow-run-as-root noprefix do-not-launch preload-binary enable-recovery",
    # srun's options with an optional value need "=" for it, so alone they read none.
    srun="unbuffered u l K kill-on-bad-exit overlap exact pty multi-prog quiet-on-interrupt disable-status X "
    "spread-job use-min-nodes no-kill",
)

#: Options that read one value.
_ONE_VALUE = _words(
    hydra="f hosts rankmap wdir configfile genvlist envlist launcher launcher-exec rmk topolib bind-to map-by "
    "membind demux errfile-pattern outfile-pattern prepend-pattern gpus-per-proc iface localhost nameserver "
    "order-nodes pmi-port usize bootstrap bootstrap-exec",
    pals="depth d mem-bind pmi umask host",
    openmpi="H N npernode npersocket rank-by display output stream-buffering add-host default-hostfile "
    "runtime-options app prefix path machinefile personality forward-signals tune",
    srun="nodes ntasks ntasks-per-node ntasks-per-socket cpus-per-task cpus-per-gpu gpus G gpus-per-node "
    "gpus-per-task gpu-bind mem mem-per-cpu mem-per-gpu mpi time partition p account A qos nodelist w exclude "
    "distribution m export error e input i job-name J gres constraint C network hint threads-per-core "
    "sockets-per-node cores-per-socket switches signal open-mode wait W container het-group reservation chdir D "
    "cpu-freq accel-bind comment licenses L dependency jobid mincpus tmp cluster-constraint",
)

#: Options that read two values (``-genv NAME VALUE``, ``--mca KEY VALUE``).
_TWO_VALUES = _words(hydra="genv", openmpi="mca prtemca pmixmca gmca")

#: Launcher option name (no dashes) -> how many values it reads.
LAUNCHER_OPTIONS: dict[str, int] = {
    **{name: 0 for name in _SWITCHES},
    **{name: 1 for name in _ONE_VALUE},
    **{name: 2 for name in _TWO_VALUES},
}


def option_arity(token: str) -> int | None:
    """Return how many values launcher option ``token`` reads after it, or ``None`` when unknown.

    ``--depth=8`` carries its value (0); ``-N2`` is a one-letter option with
    its value attached (0).
    """
    name, eq, _ = token.lstrip("-").partition("=")
    arity = LAUNCHER_OPTIONS.get(name)
    if arity is not None:
        return 0 if eq else arity
    if not token.startswith("--") and LAUNCHER_OPTIONS.get(name[:1]) == 1 and len(name) > 1:
        return 0
    return None
