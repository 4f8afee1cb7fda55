"""A stand-in cloud for the `command` burst provider: each provision starts a new real sshd node
(own host key, port and fake GPUs) on a loopback address, like the bed's nodes.

    python -m tests.integration.burst_node provision REQUEST_ID   # prints the instance JSON
    python -m tests.integration.burst_node status INSTANCE_ID     # running | lost | terminated
    python -m tests.integration.burst_node terminate INSTANCE_ID
    python -m tests.integration.burst_node kill INSTANCE_ID       # a spot interruption

Environment (the provider's `command.env`): FDTEST_BURST_DIR (where nodes live),
FDTEST_AUTHORIZED_KEYS (the bed client's key), FDTEST_NVML_LIB (fake NVML library dir),
FDTEST_BURST_GPUS (fake GPUs per node, default 1), FDTEST_PRICE (price per hour, default 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.bed.fake_nvml import FakeGpu, write_state
from tests.bed.procs import free_port, kill_mentioning, kill_tree, port_accepts, wait_for
from tests.bed.ssh import SSHD, keygen, sshd_config

USAGE = "usage: burst_node.py provision REQUEST_ID | status|terminate|kill INSTANCE_ID"


def _root() -> Path:
    return Path(os.environ["FDTEST_BURST_DIR"])


def _dir(instance_id: str) -> Path:
    d = _root() / instance_id
    if d.parent != _root() or not instance_id.startswith("i-"):
        raise SystemExit(f"bad instance id {instance_id!r}")
    return d


def _pid(d: Path) -> int | None:
    try:
        pid = int((d / "sshd.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def provision(request_id: str) -> dict[str, object]:
    instance_id = "i-" + hashlib.sha256(request_id.encode()).hexdigest()[:12]
    d = _dir(instance_id)
    d.mkdir(parents=True)
    octet = 200 + int(instance_id[2:6], 16) % 50
    host = f"127.0.0.{octet}"
    port = free_port(host)
    key = d / "ssh_host_ed25519_key"
    keygen(key, f"hostkey-{instance_id}")
    nvml_state = d / "nvml.state"
    gpus = int(os.environ.get("FDTEST_BURST_GPUS", "1"))
    write_state(nvml_state, [FakeGpu(util_pct=60)] * gpus)
    env = {"FLEETDECK_BED_NODE": instance_id, "FDBED_NODE_DIR": str(d),
           "LD_LIBRARY_PATH": os.environ["FDTEST_NVML_LIB"], "FAKE_NVML_STATE": str(nvml_state)}
    root_home = d / "home"
    root_home.mkdir()
    (d / "sshd_config").write_text(sshd_config(
        listen=f"{host}:{port}", host_key=key, pidfile=d / "sshd.pid",
        authorized_keys=os.environ["FDTEST_AUTHORIZED_KEYS"], env=env, root_home=root_home))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    # without -D sshd detaches (new session) and outlives this script, like a booted VM
    subprocess.run([SSHD, "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")],
                   check=True, stdin=subprocess.DEVNULL)
    wait_for(lambda: port_accepts(host, port, banner=b"SSH-"), timeout_s=30,
             what=f"sshd {instance_id}")
    public = " ".join(Path(f"{key}.pub").read_text().split()[:2])
    address = {"host": host, "port": port, "user": "root"}
    (d / "address.json").write_text(json.dumps(address))
    return {"instance_id": instance_id, **address, "state": "running", "host_key": public,
            "price_per_hour": float(os.environ.get("FDTEST_PRICE", "1"))}


def status(instance_id: str) -> dict[str, object]:
    d = _dir(instance_id)
    if (d / "terminated").exists():
        return {"state": "terminated"}
    if _pid(d) is None:
        return {"state": "lost", "reason": "the node vanished (spot interruption)"}
    return {"state": "running", **json.loads((d / "address.json").read_text())}


def kill(instance_id: str) -> None:
    d = _dir(instance_id)
    pid = _pid(d)
    if pid is not None:
        kill_tree(pid)  # the listener and every connection's sshd: open sessions drop too
    kill_mentioning(d)  # what runs detached (jobs) carries the node's marker


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    what, arg = argv
    if what == "provision":
        print(json.dumps(provision(arg)))
    elif what == "status":
        print(json.dumps(status(arg)))
    elif what == "terminate":
        kill(arg)
        (_dir(arg) / "terminated").touch()
    elif what == "kill":
        kill(arg)
    else:
        print(USAGE, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
