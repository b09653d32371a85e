"""Plan: the rendered launch as text (shell-quoted) and as JSON data, field by field."""

from __future__ import annotations

import json
import shlex

from ezpz.model.plan import Plan


def plan() -> Plan:
    return Plan(
        argv=("mpiexec", "-n", "4", "python3", "-c", "print('a b')"),
        env={"MASTER_ADDR": "n1"},
        np=4,
        ppn=2,
        nhosts=2,
        hosts=("n1", "n2"),
        scheduler="pbs",
        launcher="hydra",
        template="polaris",
        provenance={"np": "flags"},
        files=(("/tmp/h", "n1\nn2\n"),),
        timeout=60.0,
        retries=2,
        stop_grace=10.0,
        spec={"np": 4},
        left_out=(("n3", "excluded"),),
        spares=("n4",),
        supervise=True,
        tag=False,
        console_ranks="0",
        run_dir="/tmp/run",
    )


def test_str_is_the_shell_quoted_command() -> None:
    assert str(plan()) == "mpiexec -n 4 python3 -c 'print('\"'\"'a b'\"'\"')'"
    assert shlex.split(str(plan())) == list(plan().argv)


def test_to_dict_has_every_field_as_plain_data() -> None:
    assert plan().to_dict() == {
        "scheduler": "pbs",
        "launcher": "hydra",
        "template": "polaris",
        "np": 4,
        "ppn": 2,
        "nhosts": 2,
        "hosts": ["n1", "n2"],
        "argv": ["mpiexec", "-n", "4", "python3", "-c", "print('a b')"],
        "command": str(plan()),
        "env": {"MASTER_ADDR": "n1"},
        "files": {"/tmp/h": "n1\nn2\n"},
        "timeout": 60.0,
        "retries": 2,
        "stop_grace": 10.0,
        "provenance": {"np": "flags"},
        "spec": {"np": 4},
        "left_out": {"n3": "excluded"},
        "spares": ["n4"],
        "supervise": True,
        "tag": False,
        "console_ranks": "0",
        "run_dir": "/tmp/run",
    }


def test_to_json_is_to_dict() -> None:
    assert json.loads(plan().to_json()) == plan().to_dict()
    assert plan().to_json(indent=2).startswith('{\n  "scheduler": "pbs"')
    assert "\n" not in plan().to_json()
