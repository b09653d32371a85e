"""ezpz.launch.layers: the one layer order (config < env < flags, template below), in one process."""

from __future__ import annotations

from pathlib import Path

from ezpz.launch.layers import build_layers, env_layer, with_env, with_template
from ezpz.model.template import Template


def test_flags_not_given_are_dropped_and_no_flags_is_no_layer() -> None:
    assert build_layers({"np": None, "env": [], "ppn": 2, "tag": False}) == [("flags", {"ppn": 2, "tag": False})]
    assert build_layers({"np": None, "env": []}) == []


def test_a_config_file_is_the_layer_below_the_flags(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("np = 4\n")
    assert build_layers({"ppn": 2}, config) == [(f"config:{config}", {"np": 4}), ("flags", {"ppn": 2})]
    assert build_layers({}, str(config)) == [(f"config:{config}", {"np": 4})]


def test_the_environment_goes_after_config_files_and_before_flags() -> None:
    layers = [("config:a.toml", {"np": 2}), ("config:b.toml", {"np": 3}), ("flags", {"ppn": 1})]
    assert with_env(layers, {"EZPZ_NP": " 8 ", "EZPZ_PPN": "", "HOME": "/root"}) == [
        ("config:a.toml", {"np": 2}),
        ("config:b.toml", {"np": 3}),
        ("env", {"np": "8"}),
        ("flags", {"ppn": 1}),
    ]
    assert with_env([("flags", {})], {}) == [("env", {}), ("flags", {})]
    # a stack that already has its environment layer keeps it
    own = [("env", {"np": "1"}), ("flags", {})]
    assert with_env(own, {"EZPZ_NP": "8"}) == own


def test_cpu_bind_comes_from_either_variable() -> None:
    assert env_layer({"CPU_BIND": "depth"}) == {"cpu_bind": "depth"}
    assert env_layer({"EZPZ_CPU_BIND": "core"}) == {"cpu_bind": "core"}


def test_a_template_goes_below_everything_and_an_automatic_choice_says_why() -> None:
    template = Template(name="site", scheduler="pbs", defaults={"ppn": 4})
    layers = [("flags", {"np": 8})]
    assert with_template(layers, None) == layers
    assert with_template(layers, template) == [("template:site", {"ppn": 4}), ("flags", {"np": 8})]
    assert with_template(layers, template, "host x1 matches 'x*'") == [
        ("template:site", {"ppn": 4}),
        ("template:site (host x1 matches 'x*')", {"template": "site"}),
        ("flags", {"np": 8}),
    ]
