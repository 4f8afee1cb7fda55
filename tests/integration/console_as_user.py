"""The console under Pilot, run as a bed user by tests/integration/test_users_remote.py.

`python console_as_user.py [--config C] [--engine ADDRESS] JOB_ID` opens the console the way
`fleetdeck` does (the same flags, an SSH tunnel for ssh:// engines), waits on the Jobs screen
until JOB_ID shows, and prints one JSON line: the user the console believes it is, the jobs
filter it opened with, its own line in the header, the job ids shown and whether Submit
is offered.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from console.app import FleetdeckApp, open_link
from console.cli import build_parser
from console.commands.common import loaded_config, open_engine_address
from console.screens.jobs import JobsScreen
from console.widgets.keyed_table import KeyedTable


async def pilot(args: object, job_id: str, timeout_s: float = 90.0) -> dict[str, object]:
    loaded = loaded_config(args)  # type: ignore[arg-type]
    link = await open_link(loaded)
    app = FleetdeckApp(link, start="jobs")
    async with app.run_test(size=(140, 40)) as p:
        deadline = time.monotonic() + timeout_s
        shown: list[str] = []
        while time.monotonic() < deadline:
            await p.pause(0.2)
            if isinstance(app.screen, JobsScreen):
                table = app.screen.query_one(KeyedTable)
                shown = table.shown_keys
                if job_id in shown and app.me_text:
                    break
        return {
            "user": app.user,
            "role": app.role,
            "me": app.me_text,
            "filter": str(getattr(app.screen, "filter_text", "")),
            "shown": shown,
            "submit_offered": any(b.binding.action == "submit"
                                  for b in app.active_bindings.values()),
            "embedded": link.embedded is not None,
        }


def main(argv: list[str]) -> int:
    *flags, job_id = argv
    args = build_parser().parse_args(flags)
    tunnel = open_engine_address(args)
    try:
        result = asyncio.run(pilot(args, job_id))
    finally:
        if tunnel is not None:
            tunnel.close()
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
