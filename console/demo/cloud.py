"""The demo's burst provider scripts: "rent" a simulated 8 x H100 node, release it.

    python -m console.demo.cloud --root DEMO provision REQUEST_ID OFFER
    python -m console.demo.cloud --root DEMO terminate INSTANCE_ID

`provision` creates a sim node sandbox under `DEMO/cloud/nodes/` and prints the command
provider's JSON (`instance_id`, `host` = the sandbox, `state` running, plus
`"transport": "sim"` so the node joins the fleet as a simulated one). `terminate` stops what
runs there and marks the node down. Idempotent per request id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from collectors.transport.sim import set_down, stop_sandbox_jobs, write_profile
from console.demo.fleet import BURST_PRICE_PER_HOUR, H100


def instance_id(request_id: str) -> str:
    return "i-" + hashlib.sha256(request_id.encode()).hexdigest()[:12]


def provision(root: Path, request_id: str, offer: str) -> dict[str, object]:
    iid = instance_id(request_id)
    sandbox = root / "cloud" / "nodes" / iid
    if not (sandbox / "node.json").exists():
        write_profile(sandbox, H100)
    set_down(sandbox, False)
    return {"instance_id": iid, "host": str(sandbox), "port": 22, "user": "demo",
            "price_per_hour": BURST_PRICE_PER_HOUR, "state": "running", "transport": "sim",
            "node_name": f"burst-{iid[2:10]}", "offer": offer}


def terminate(root: Path, iid: str) -> None:
    sandbox = root / "cloud" / "nodes" / iid
    if sandbox.exists():
        stop_sandbox_jobs(sandbox)
        set_down(sandbox, True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="console.demo.cloud")
    parser.add_argument("--root", required=True, type=Path)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("provision")
    p.add_argument("request_id")
    p.add_argument("offer")
    t = sub.add_parser("terminate")
    t.add_argument("instance_id")
    args = parser.parse_args(argv)
    if args.cmd == "provision":
        print(json.dumps(provision(args.root, args.request_id, args.offer)))
    else:
        terminate(args.root, args.instance_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
