"""The `aws` provider against moto's EC2 server (no internet): spot and on-demand, tags,
idempotency, terminate, lost instances; and fleetdeck without boto3."""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from scheduler.providers import (
    AwsSettings,
    InstanceState,
    Offer,
    ProviderConfig,
    ProviderError,
    build_provider,
    fleetdeck_tags,
)
from scheduler.providers.aws import TERMINATE_TAG, AwsProvider
from tests.bed.require import unavailable
from tests.helpers import REPO

SPOT = Offer("aws-a10g-spot", "aws", "g5.xlarge", "A10G", 1, 0.45, market="spot", max_nodes=4)
ON_DEMAND = Offer("aws-a10g", "aws", "g5.xlarge", "A10G", 1, 1.01)


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        unavailable(f"{name} is not installed ({e}); pip install -e '.[test,aws]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server_mod = _module("moto.server")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def ec2(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    boto3 = _module("boto3")
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)


@pytest.fixture(scope="module")
def image_id(endpoint: str) -> str:
    boto3 = _module("boto3")
    client = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return str(client.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"])


@pytest.fixture
def provider(ec2: Any, endpoint: str, image_id: str) -> AwsProvider:
    image = image_id
    cfg = ProviderConfig("aws", "aws", aws=AwsSettings(
        region="us-east-1", endpoint_url=endpoint, image_id=image, key_name=None,
        ssh_user="ec2-user", extra_tags={"cost-center": "ml"}))
    prov = build_provider(cfg, [SPOT, ON_DEMAND])
    assert isinstance(prov, AwsProvider)
    return prov


def describe(ec2: Any, instance_id: str) -> dict[str, Any]:
    res = ec2.describe_instances(InstanceIds=[instance_id])
    return dict(res["Reservations"][0]["Instances"][0])


def tags_of(desc: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in desc.get("Tags", [])}


async def wait_running(prov: AwsProvider, iid: str) -> Any:
    for _ in range(50):
        st = await prov.status(iid)
        if st.state is InstanceState.RUNNING:
            return st
    raise AssertionError(f"{iid} never ran")


@pytest.mark.parametrize("offer", [SPOT, ON_DEMAND], ids=["spot", "on-demand"])
async def test_provision_and_terminate_with_tags(provider: AwsProvider, ec2: Any,
                                                 offer: Offer) -> None:
    rid = f"fd-42-{offer.market}"
    tags = fleetdeck_tags(rid, team="vision", project="seg", offer=offer.name)
    inst = await provider.provision(offer, request_id=rid, tags=tags)
    assert inst.instance_id.startswith("i-") and inst.provider == "aws"
    assert inst.request_id == rid and inst.offer == offer.name
    assert inst.market == offer.market and inst.price_per_hour == offer.price_per_hour
    assert inst.state in (InstanceState.PENDING, InstanceState.RUNNING)
    desc = describe(ec2, inst.instance_id)
    assert desc["InstanceType"] == "g5.xlarge"
    assert desc.get("InstanceLifecycle") == ("spot" if offer.market == "spot" else None)
    t = tags_of(desc)
    assert t["fleetdeck:managed"] == "true" and t["fleetdeck:request"] == rid
    assert t["fleetdeck:team"] == "vision" and t["fleetdeck:project"] == "seg"
    assert t["fleetdeck:offer"] == offer.name and t["cost-center"] == "ml"
    assert t["Name"] == f"fleetdeck-{rid}"
    st = await wait_running(provider, inst.instance_id)
    assert st.host and st.user == "ec2-user" and st.port == 22
    await provider.terminate(inst.instance_id)
    assert describe(ec2, inst.instance_id)["State"]["Name"] in ("shutting-down", "terminated")
    assert tags_of(describe(ec2, inst.instance_id))[TERMINATE_TAG] == "true"
    done = await provider.status(inst.instance_id)
    assert done.state is InstanceState.TERMINATED
    await provider.terminate(inst.instance_id)  # idempotent


async def test_provision_is_idempotent_by_request_id(provider: AwsProvider, ec2: Any,
                                                     endpoint: str) -> None:
    a = await provider.provision(SPOT, request_id="fd-7-0", tags={})
    b = await provider.provision(SPOT, request_id="fd-7-0", tags={})
    assert a.instance_id == b.instance_id
    # a restarted engine (a new provider object) finds it by its tags
    again = AwsProvider("aws", provider.settings, [SPOT])
    c = await again.provision(SPOT, request_id="fd-7-0", tags={})
    assert c.instance_id == a.instance_id
    found = ec2.describe_instances(Filters=[{"Name": "tag:fleetdeck:request",
                                             "Values": ["fd-7-0"]}])
    assert sum(len(r["Instances"]) for r in found["Reservations"]) == 1
    other = await provider.provision(SPOT, request_id="fd-8-0", tags={})
    assert other.instance_id != a.instance_id


async def test_instance_terminated_outside_fleetdeck_is_lost(provider: AwsProvider,
                                                             ec2: Any) -> None:
    inst = await provider.provision(SPOT, request_id="fd-9-0", tags={})
    ec2.terminate_instances(InstanceIds=[inst.instance_id])  # e.g. a spot interruption
    st = await provider.status(inst.instance_id)
    assert st.state is InstanceState.LOST
    gone = await provider.status("i-0123456789abcdef0")
    assert gone.state is InstanceState.LOST
    await provider.terminate("i-0123456789abcdef0")  # unknown: not an error


async def test_missing_image_is_a_clear_error(ec2: Any, endpoint: str) -> None:
    prov = AwsProvider("aws", AwsSettings(endpoint_url=endpoint), [SPOT])
    with pytest.raises(ProviderError, match=r'provider "aws": no AMI: set aws.image_id or '
                                            r'the offer "aws-a10g-spot" options.image_id'):
        await prov.provision(SPOT, request_id="r", tags={})


async def test_cloud_errors_name_the_call(ec2: Any, endpoint: str) -> None:
    prov = AwsProvider("aws", AwsSettings(endpoint_url=endpoint, image_id="ami-x"), [SPOT])
    bad = Offer("bad", "aws", "g5.xlarge", "A10G", 1, 1.0, options={"subnet_id": "subnet-nope"})
    with pytest.raises(ProviderError, match=r'provider "aws": EC2 run_instances failed: ') as e:
        await prov.provision(bad, request_id="r2", tags={})
    assert "subnet-nope" in str(e.value) or "NotFound" in str(e.value)


def test_without_boto3_fleetdeck_imports_and_lists_aws_as_unavailable() -> None:
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "import scheduler.providers as p, scheduler.policies\n"
        "from scheduler.providers.registry import build_providers\n"
        "t = p.provider_types()\n"
        "print(t['aws'].available, t['command'].available)\n"
        "print(t['aws'].reason)\n"
        "cfg = p.ProviderConfig('cloud', 'aws')\n"
        "off = p.Offer('o', 'cloud', 'g5.xlarge', 'A10G', 1, 1.0)\n"
        "live, missing = build_providers([cfg], [off])\n"
        "print(sorted(live), missing['cloud'])\n"
        "print(p.unavailable_offers([off], missing))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "False True"
    assert lines[1].startswith("needs boto3: pip install 'fleetdeck[aws]'")
    assert lines[2].startswith('[] provider "cloud" (aws) unavailable: needs boto3')
    assert "'o': 'provider \"cloud\" (aws) unavailable" in lines[3]
