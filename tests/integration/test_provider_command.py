"""The `command` provider against real scripts: protocol, idempotency, errors, timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from scheduler.providers import (
    CommandSettings,
    InstanceState,
    Offer,
    ProviderConfig,
    ProviderError,
    build_provider,
    fleetdeck_tags,
)
from scheduler.providers.command import CommandProvider

OFFER = Offer("lab-a10", "lab", "a10x1", "A10G", 1, 1.25, market="spot",
              options={"zone": "rack-3"})

# A fake cloud: one JSON file per instance under $CLOUD; every run is logged.
PROVISION = r'''
import json, os, sys
cloud = os.environ["CLOUD"]
with open(os.path.join(cloud, "calls.log"), "a") as f:
    f.write("provision " + " ".join(sys.argv[1:]) + "\n")
print("booting...", file=sys.stderr)
print("some log line on stdout")
n = len([p for p in os.listdir(cloud) if p.startswith("i-")])
iid = f"i-{n + 1:04d}"
rec = {"state": os.environ.get("START_STATE", "running"), "host": "10.0.0.%d" % (n + 7)}
json.dump(rec, open(os.path.join(cloud, iid), "w"))
out = {"instance_id": iid, "port": 2222, "user": "ubuntu", "price_per_hour": 1.1,
       "zone": json.loads(os.environ["FLEETDECK_OFFER_OPTIONS"])["zone"],
       "tags": json.loads(os.environ["FLEETDECK_TAGS"]), "argv": sys.argv[1:]}
if rec["state"] == "running":
    out["host"] = rec["host"]
else:
    out["state"] = "pending"
print(json.dumps(out))
'''

STATUS = r'''
import json, os, sys
cloud = os.environ["CLOUD"]
path = os.path.join(cloud, sys.argv[1])
if not os.path.exists(path):
    print(json.dumps({"state": "lost", "reason": "no such instance"}))
    sys.exit(0)
rec = json.load(open(path))
out = {"state": rec["state"]}
if rec["state"] == "running":
    out.update(host=rec["host"], port=2222, user="ubuntu")
print(json.dumps(out))
'''

TERMINATE = r'''
import json, os, sys
cloud = os.environ["CLOUD"]
with open(os.path.join(cloud, "calls.log"), "a") as f:
    f.write("terminate " + " ".join(sys.argv[1:]) + "\n")
os.remove(os.path.join(cloud, next(a for a in sys.argv[1:] if a.startswith("i-"))))
'''


def script(tmp: Path, name: str, body: str) -> str:
    p = tmp / name
    p.write_text(f"#!{sys.executable}\n{body}")
    p.chmod(0o755)
    return str(p)


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    c = tmp_path / "cloud"
    c.mkdir()
    monkeypatch.setenv("CLOUD", str(c))
    return c


def settings(tmp: Path, *, status: bool = True, **kw: object) -> CommandSettings:
    base: dict[str, object] = dict(
        provision_command=(script(tmp, "up.py", PROVISION), "--offer={offer}",
                           "{request_id}", "{gpu_count}x{gpu_model}"),
        terminate_command=(script(tmp, "down.py", TERMINATE),),
        status_command=(script(tmp, "status.py", STATUS),) if status else (),
        provision_timeout_s=30.0)
    base.update(kw)
    return CommandSettings(**base)  # type: ignore[arg-type]


def calls(cloud: Path) -> list[str]:
    log = cloud / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


async def test_provision_status_terminate(tmp_path: Path, cloud: Path) -> None:
    prov = build_provider(ProviderConfig("lab", "command", command=settings(tmp_path)),
                          [OFFER])
    assert prov.offers() == [OFFER]
    tags = fleetdeck_tags("fd-42-0", team="vision", project="seg", offer=OFFER.name)
    inst = await prov.provision(OFFER, request_id="fd-42-0", tags=tags)
    assert inst.instance_id == "i-0001" and inst.state is InstanceState.RUNNING
    assert (inst.host, inst.port, inst.user) == ("10.0.0.7", 2222, "ubuntu")
    assert inst.price_per_hour == 1.1 and inst.request_id == "fd-42-0"
    assert inst.offer == "lab-a10" and inst.market == "spot"
    assert inst.extra["zone"] == "rack-3"
    assert inst.extra["tags"] == {"fleetdeck:managed": "true", "fleetdeck:request": "fd-42-0",
                                  "fleetdeck:team": "vision", "fleetdeck:project": "seg",
                                  "fleetdeck:offer": "lab-a10"}
    assert inst.extra["argv"] == ["--offer=lab-a10", "fd-42-0", "1xA10G"]
    st = await prov.status("i-0001")
    assert st.state is InstanceState.RUNNING and st.host == "10.0.0.7"
    await prov.terminate("i-0001")
    await prov.terminate("i-0001")  # idempotent: the script runs once
    assert calls(cloud) == ["provision --offer=lab-a10 fd-42-0 1xA10G", "terminate i-0001"]
    assert (await prov.status("i-0001")).state is InstanceState.TERMINATED


async def test_provision_is_idempotent_also_across_restarts(tmp_path: Path,
                                                            cloud: Path) -> None:
    s = settings(tmp_path, state_dir=tmp_path / "state")
    prov = CommandProvider("lab", s, [OFFER])
    a, b = await asyncio.gather(prov.provision(OFFER, request_id="fd-1-0", tags={}),
                                prov.provision(OFFER, request_id="fd-1-0", tags={}))
    assert a == b
    assert (await prov.provision(OFFER, request_id="fd-1-0", tags={})) == a
    restarted = CommandProvider("lab", s, [OFFER])
    c = await restarted.provision(OFFER, request_id="fd-1-0", tags={})
    assert c.instance_id == a.instance_id and c.host == a.host
    other = await restarted.provision(OFFER, request_id="fd-2-0", tags={})
    assert other.instance_id == "i-0002"
    assert [ln.split()[0] for ln in calls(cloud)] == ["provision", "provision"]
    await restarted.terminate(a.instance_id)
    again = CommandProvider("lab", s, [OFFER])
    await again.terminate(a.instance_id)  # remembered as terminated: no second run
    assert (await again.status(a.instance_id)).state is InstanceState.TERMINATED
    assert calls(cloud)[-1] == f"terminate {a.instance_id}" and len(calls(cloud)) == 3


async def test_pending_until_status_says_running(tmp_path: Path, cloud: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("START_STATE", "pending")
    prov = CommandProvider("lab", settings(tmp_path), [OFFER])
    inst = await prov.provision(OFFER, request_id="r", tags={})
    assert inst.state is InstanceState.PENDING and inst.host is None
    assert (await prov.status(inst.instance_id)).state is InstanceState.PENDING
    rec = json.loads((cloud / inst.instance_id).read_text())
    (cloud / inst.instance_id).write_text(json.dumps({**rec, "state": "running"}))
    st = await prov.status(inst.instance_id)
    assert st.state is InstanceState.RUNNING and st.host == "10.0.0.7" and st.user == "ubuntu"
    (cloud / inst.instance_id).unlink()  # gone behind fleetdeck's back (spot interruption)
    lost = await prov.status(inst.instance_id)
    assert lost.state is InstanceState.LOST and lost.reason == "no such instance"


async def test_without_status_command_the_printed_state_holds(tmp_path: Path,
                                                              cloud: Path) -> None:
    prov = CommandProvider("lab", settings(tmp_path, status=False), [OFFER])
    inst = await prov.provision(OFFER, request_id="r", tags={})
    st = await prov.status(inst.instance_id)
    assert st.state is InstanceState.RUNNING and st.host == inst.host
    with pytest.raises(ProviderError, match="unknown instance 'i-9'"):
        await prov.status("i-9")


@pytest.mark.parametrize(("stdout", "message"), [
    ("not json at all",
     'provider "lab": provision_command must print a JSON object on stdout '
     '(e.g. {"instance_id": "i-1", "host": "10.0.0.7"}), got \'not json at all\''),
    ('["i-1"]', "must print a JSON object on stdout"),
    ("", "got 'nothing'"),
    ('{"host": "h"}', 'provision_command output: "instance_id": expected a non-empty string'),
    ('{"instance_id": "i-1", "host": "h", "port": "22a"}',
     'provision_command output: "port": expected an integer 1-65535, got "22a"'),
    ('{"instance_id": "i-1", "host": "h", "price_per_hour": -1}',
     '"price_per_hour": expected a number >= 0, got -1'),
    ('{"instance_id": "i-1", "state": "running"}',
     '"host": expected a host when state is running'),
    ('{"instance_id": "i-1", "host": "h", "state": "exploded"}',
     '"state": expected one of pending, running, got "exploded"'),
])
async def test_bad_output_is_a_clear_error(tmp_path: Path, cloud: Path, stdout: str,
                                           message: str) -> None:
    up = script(tmp_path, "bad.py", f"print({stdout!r})")
    prov = CommandProvider("lab", settings(tmp_path, provision_command=(up,)), [OFFER])
    with pytest.raises(ProviderError) as err:
        await prov.provision(OFFER, request_id="r", tags={})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


async def test_failing_script_reports_exit_status_and_stderr(tmp_path: Path,
                                                             cloud: Path) -> None:
    up = script(tmp_path, "fail.py",
                "import sys\nprint('quota check', file=sys.stderr)\n"
                "print('InsufficientInstanceCapacity in rack-3', file=sys.stderr)\nsys.exit(3)")
    prov = CommandProvider("lab", settings(tmp_path, provision_command=(up,)), [OFFER])
    with pytest.raises(ProviderError, match=r'provider "lab": provision_command exited with '
                                            r"status 3: InsufficientInstanceCapacity in rack-3"):
        await prov.provision(OFFER, request_id="r", tags={})
    missing = CommandProvider("lab", settings(tmp_path, provision_command=(
        str(tmp_path / "nope.sh"),)), [OFFER])
    with pytest.raises(ProviderError, match="cannot run provision_command"):
        await missing.provision(OFFER, request_id="r", tags={})


async def test_timeout_kills_the_script(tmp_path: Path, cloud: Path) -> None:
    pidfile = tmp_path / "pid"
    up = script(tmp_path, "slow.py",
                f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
                "time.sleep(3600)\nprint('{}')")
    prov = CommandProvider("lab", settings(tmp_path, provision_command=(up,),
                                           provision_timeout_s=1.0), [OFFER])
    # the script sleeps an hour: provision returning at all means the timeout killed it
    with pytest.raises(ProviderError, match="provision_command timed out after 1s and was "
                                            "killed"):
        await prov.provision(OFFER, request_id="r", tags={})
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # a failed provision is not remembered: the next call tries again
    fast = CommandProvider("lab", settings(tmp_path), [OFFER])
    assert (await fast.provision(OFFER, request_id="r", tags={})).instance_id == "i-0001"


async def test_instance_id_placeholder_in_terminate(tmp_path: Path, cloud: Path) -> None:
    down = script(tmp_path, "down2.py", TERMINATE)
    s = settings(tmp_path, terminate_command=(down, "--id", "{instance_id}", "--force"))
    prov = CommandProvider("lab", s, [OFFER])
    inst = await prov.provision(OFFER, request_id="r", tags={})
    await prov.terminate(inst.instance_id)
    assert calls(cloud)[-1] == "terminate --id i-0001 --force"
    assert not (cloud / "i-0001").exists()
