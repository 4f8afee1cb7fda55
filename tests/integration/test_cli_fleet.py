"""CLI over real sshd nodes: host keys are verified, `nodes trust` records a key,
`collect --once` prints the fleet; reports read the same with or without an engine."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bed.require import require_sshd
from tests.helpers import cli, serve, write_config


def test_unknown_host_key_refused_then_trusted(ssh_nodes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    require_sshd()
    node, = ssh_nodes(1)
    known = tmp_path / "known_hosts"
    known.write_text("")
    cfg = write_config(tmp_path / "c.toml", tmp_path / "s.duckdb",
                       f'[ssh]\nknown_hosts = "{known}"\n\n' + node.config_toml())

    res = cli("--config", str(cfg), "collect", "--once", "--format", "json", "--timeout", "20")
    assert res.returncode == 0, res.stderr
    view = json.loads(res.stdout)
    state = view["nodes"][node.name]["health"]
    assert state["state"] == "unreachable"
    assert node.host_key_fingerprint in state["reason"]
    assert f"fleetdeck nodes trust {node.name}" in state["reason"]

    res = cli("--config", str(cfg), "nodes", "trust", node.name, "--yes")
    assert res.returncode == 0, res.stderr
    assert node.host_key_fingerprint in res.stdout
    assert f"[{node.host}]:{node.port}" in known.read_text()

    res = cli("--config", str(cfg), "collect", "--once", "--format", "json")
    assert res.returncode == 0, res.stderr
    view = json.loads(res.stdout)
    assert view["nodes"][node.name]["health"]["state"] in ("up", "degraded")
    assert view["nodes"][node.name]["record"]["host"]["cpu_count"] >= 1

    res = cli("--config", str(cfg), "nodes", "trust", node.name, "--yes")
    assert "already trusted" in res.stdout


def test_trust_unknown_node_is_one_line_exit_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", tmp_path / "s.duckdb",
                       '[[nodes]]\nname = "a"\nhost = "127.0.0.1"\n')
    res = cli("--config", str(cfg), "nodes", "trust", "nope", "--yes")
    assert res.returncode == 2
    assert res.stderr.strip() == ('command line: NODE: expected a node from the config (a), '
                                  'got "nope"')


def test_report_same_through_engine_and_store(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", tmp_path / "s.duckdb",
                       "[engine]\ncollect = false\nschedule = false\n")
    with serve(cfg):
        via_engine = cli("--config", str(cfg), "report", "usage", "--format", "csv")
        bad = cli("--config", str(cfg), "report", "usage", "--by", "planet")
    direct = cli("--config", str(cfg), "report", "usage", "--format", "csv")
    assert via_engine.returncode == 0, via_engine.stderr
    assert direct.returncode == 0, direct.stderr
    assert via_engine.stdout == direct.stdout
    assert via_engine.stdout.startswith("period_start,pool,model,gpus_present")
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith('--by: expected one of user, project, team, pool, '
                                       'model, got "planet"'), bad.stderr
