"""Config: bad inputs give one documented line and exit 2; the example covers the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.config import Config, load
from console.typed import field_paths
from tests.helpers import REPO, cli, one_line_error

BAD = [
    ('[[nodes]]\nname = "a"\nport = "22a"\n',
     'nodes[0].port: expected an integer 1-65535, got "22a"'),
    ('[[nodes]]\nname = "a"\n[[nodes]]\nname = "b"\n[[nodes]]\nname = "c"\nport = 70000\n',
     "nodes[2].port: expected an integer 1-65535, got 70000"),
    ('[collect]\ninterval_s = "fast"\n',
     'collect.interval_s: expected a number 0.2-3600, got "fast"'),
    ("[collect]\ninterval_s = 0\n", "collect.interval_s: expected a number 0.2-3600, got 0"),
    ('[[nodes]]\nname = "a"\ntransport = "telnet"\n',
     'nodes[0].transport: expected one of "ssh", "local", "sim", got "telnet"'),
    ('[[nodes]]\nhost = "x"\n', "nodes[0].name: expected a value (a non-empty string)"),
    ('[[nodes]]\nname = "a"\nprot = 22\n', "nodes[0].prot: expected one of the known keys"),
    ('[stor]\npath = "x"\n', "stor: expected one of the known keys"),
    ('[[nodes]]\nname = "a"\nlabels = "gpu"\n',
     'nodes[0].labels: expected a table of strings, got "gpu"'),
    ('[[nodes]]\nname = "a"\nlabels = { rack = 3 }\n',
     "nodes[0].labels.rack: expected a string, got 3"),
    ('[scheduler]\nbackfill = "yes"\n', 'scheduler.backfill: expected true or false, got "yes"'),
    ('[[nodes]]\nname = "a"\n[[nodes]]\nname = "a"\n',
     'nodes[1].name: expected a unique node name (nodes[0] is also "a"), got "a"'),
    ('[[pools]]\nname = "hpc"\nkind = "slurm"\n',
     "pools[0].login_node: expected a node name for a slurm pool's login node"),
    ('[[pools]]\nname = "p"\n[[nodes]]\nname = "a"\npool = "q"\n',
     'nodes[0].pool: expected the name of a pool in [[pools]], got "q"'),
    ("[collect]\ndisk_paths = [1, 2]\n", "collect.disk_paths[0]: expected a string, got 1"),
    ("nodes = 3\n", "nodes: expected an array of tables, got 3"),
    ('[store\npath = "x"\n', "expected valid TOML"),
    ("[[users]]\nname = \"bob\"\ngpu_quota = -1\n",
     "users[0].gpu_quota: expected a number >= 0, got -1"),
    ("[scheduler]\npreempt_grace_s = -1\n",
     "scheduler.preempt_grace_s: expected a number 0-86400, got -1"),
    ('[[scheduler.priority_classes]]\nname = "a"\ndefault = true\n'
     '[[scheduler.priority_classes]]\nname = "b"\ndefault = true\n',
     "scheduler.priority_classes[1].default: expected at most one default priority class"),
    ('[[scheduler.priority_classes]]\nname = "a"\n[[scheduler.priority_classes]]\nname = "a"\n',
     'scheduler.priority_classes[1].name: expected a unique priority class name, got "a"'),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_config_one_line_exit_2(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    res = cli("--config", str(cfg), "config", "check")
    assert res.returncode == 2
    line = one_line_error(res)
    assert line.startswith(f"{cfg}: "), line
    assert message in line


def test_missing_config_file(tmp_path: Path) -> None:
    res = cli("--config", str(tmp_path / "nope.toml"), "config", "check")
    assert res.returncode == 2
    assert "nope.toml: expected a readable config file (not found)" in one_line_error(res)


def test_bad_env_override(tmp_path: Path) -> None:
    res = cli("config", "check", env={"FLEETDECK__COLLECT__INTERVAL_S": "0.01"})
    assert res.returncode == 2
    assert "collect.interval_s: expected a number 0.2-3600, got 0.01" in one_line_error(res)


def test_bad_flag_one_line_exit_2() -> None:
    res = cli("db", "info", "--format", "yaml")
    assert res.returncode == 2
    assert "invalid choice: 'yaml'" in one_line_error(res)


def test_example_config_loads_and_covers_model() -> None:
    loaded = load(str(REPO / "config.example.toml"))
    assert not loaded.embedded
    from_file = {k for k, v in loaded.origins.items() if v == "file"}
    missing = set(field_paths(Config)) - from_file
    assert not missing, f"config.example.toml does not show: {sorted(missing)}"


def test_origins_default_file_env_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[collect]\ninterval_s = 2.0\n")
    res = cli("--config", str(cfg), "config", "check", "--store", str(tmp_path / "s.duckdb"),
              "--format", "json", env={"FLEETDECK__SSH__KEEPALIVE_S": "30"})
    assert res.returncode == 0, res.stderr
    import json

    rows = {r["key"]: r for r in json.loads(res.stdout)["values"]}
    assert rows["collect.interval_s"] == {"key": "collect.interval_s", "value": 2.0,
                                          "from": "file"}
    assert rows["ssh.keepalive_s"]["from"] == "env FLEETDECK__SSH__KEEPALIVE_S"
    assert rows["ssh.keepalive_s"]["value"] == 30.0
    assert rows["store.path"]["from"] == "flag --store"
    assert rows["collect.connect_timeout_s"]["from"] == "default"


def test_embedded_default_is_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("FLEETDECK_CONFIG", raising=False)
    loaded = load(None)
    assert loaded.embedded
    assert [n.transport for n in loaded.config.nodes] == ["local"]
    assert loaded.config.store.path == tmp_path / "data" / "fleetdeck" / "fleetdeck.duckdb"
