"""The `aws` provider: EC2 instances through boto3 (optional extra `fleetdeck[aws]`).

boto3 is imported when a provider is built, never at module import, so fleetdeck runs without
it; `unavailable_reason()` tells the registry why the provider is hidden.

- Spot offers launch with `InstanceMarketOptions` (one-time, terminate on interruption, the
  offer's price as `MaxPrice`), on-demand offers without.
- Every instance and volume is tagged `fleetdeck:managed=true`, `fleetdeck:request=<id>`,
  plus team/project/offer tags given by the caller and `AwsSettings.extra_tags`.
- Idempotency: an instance tagged with the request id is returned instead of launching again
  (this also finds it after an engine restart), and EC2's `ClientToken` is the request id.
- `terminate` tags `fleetdeck:terminate-requested=true` first, so `status` tells an instance
  fleetdeck released (terminated) from one the cloud took away (lost: spot interruption).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from scheduler.providers.base import (
    Instance,
    InstanceState,
    InstanceStatus,
    Market,
    Offer,
    ProviderError,
    RequestLocks,
)
from scheduler.providers.config import AwsSettings

TERMINATE_TAG = "fleetdeck:terminate-requested"
_NOT_FOUND = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}


def unavailable_reason() -> str | None:
    """None when boto3 imports, else why the aws provider cannot be used."""
    try:
        importlib.import_module("boto3")
    except ImportError as e:
        return f"needs boto3: pip install 'fleetdeck[aws]' ({e})"
    return None


class AwsProvider:
    """Provider renting EC2 instances. All EC2 calls run in a worker thread."""

    type_name = "aws"

    def __init__(self, name: str, settings: AwsSettings, offers: Sequence[Offer] = ()) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise ProviderError(f'provider "{name}": {reason}')
        boto3 = importlib.import_module("boto3")
        botocore_config = importlib.import_module("botocore.config")
        self._client_error: type[Exception] = importlib.import_module(
            "botocore.exceptions").ClientError
        self._botocore_error: type[Exception] = importlib.import_module(
            "botocore.exceptions").BotoCoreError
        self.name = name
        self.settings = settings
        self._offers = [o for o in offers if o.provider == name]
        session = boto3.session.Session(profile_name=settings.profile)
        cfg = botocore_config.Config(
            connect_timeout=settings.call_timeout_s, read_timeout=settings.call_timeout_s,
            retries={"max_attempts": 3, "mode": "standard"})
        self._ec2: Any = session.client("ec2", region_name=settings.region,
                                        endpoint_url=settings.endpoint_url, config=cfg)
        self._provisioning = RequestLocks(name)
        self._released: set[str] = set()

    def offers(self) -> list[Offer]:
        return list(self._offers)

    async def provision(self, offer: Offer, *, request_id: str,
                        tags: Mapping[str, str]) -> Instance:
        async with self._provisioning.lock(request_id):
            found = await self._call("describe_instances", Filters=[
                {"Name": "tag:fleetdeck:request", "Values": [request_id]},
                {"Name": "tag:fleetdeck:managed", "Values": ["true"]},
            ])
            existing = [i for r in found.get("Reservations", []) for i in r.get("Instances", [])]
            if existing:
                existing.sort(key=lambda i: (_ts(i.get("LaunchTime")), i["InstanceId"]))
                return self._instance(existing[0], offer, request_id)
            resp = await self._call("run_instances", **self._run_params(offer, request_id, tags))
            return self._instance(resp["Instances"][0], offer, request_id)

    async def status(self, instance_id: str) -> InstanceStatus:
        try:
            resp = await self._call("describe_instances", InstanceIds=[instance_id])
        except _NotFound:
            state = (InstanceState.TERMINATED if instance_id in self._released
                     else InstanceState.LOST)
            return InstanceStatus(instance_id, state, reason="instance not found")
        insts = [i for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
        if not insts:
            return InstanceStatus(instance_id, InstanceState.LOST, reason="instance not found")
        desc = insts[0]
        state, reason = self._state(desc)
        host = self._host(desc)
        if state is InstanceState.RUNNING and not host:
            state = InstanceState.PENDING
        return InstanceStatus(
            instance_id, state, host if state is InstanceState.RUNNING else None,
            self.settings.ssh_port, self.settings.ssh_user if host else None, reason=reason)

    async def terminate(self, instance_id: str) -> None:
        try:
            await self._call("create_tags", Resources=[instance_id],
                             Tags=[{"Key": TERMINATE_TAG, "Value": "true"}])
            await self._call("terminate_instances", InstanceIds=[instance_id])
        except _NotFound:
            pass
        self._released.add(instance_id)

    # -- helpers -----------------------------------------------------------------------------

    def _run_params(self, offer: Offer, request_id: str,
                    tags: Mapping[str, str]) -> dict[str, Any]:
        s = self.settings
        image = offer.options.get("image_id") or s.image_id
        if not image:
            raise ProviderError(f'provider "{self.name}": no AMI: set aws.image_id or the '
                                f'offer "{offer.name}" options.image_id')
        all_tags = {**s.extra_tags, **tags, "fleetdeck:managed": "true",
                    "fleetdeck:request": request_id, "fleetdeck:offer": offer.name}
        all_tags.setdefault("Name", f"fleetdeck-{request_id}")
        tag_list = [{"Key": k, "Value": v} for k, v in sorted(all_tags.items())]
        params: dict[str, Any] = {
            "ImageId": image, "InstanceType": offer.instance_type, "MinCount": 1,
            "MaxCount": 1, "ClientToken": _client_token(request_id),
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list},
                                  {"ResourceType": "volume", "Tags": tag_list}],
        }
        key_name = offer.options.get("key_name") or s.key_name
        if key_name:
            params["KeyName"] = key_name
        subnet = offer.options.get("subnet_id") or s.subnet_id
        if subnet:
            params["SubnetId"] = subnet
        if s.security_group_ids:
            params["SecurityGroupIds"] = list(s.security_group_ids)
        if s.iam_instance_profile:
            params["IamInstanceProfile"] = {"Name": s.iam_instance_profile}
        if s.user_data:
            params["UserData"] = s.user_data
        if offer.market == "spot":
            params["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"MaxPrice": f"{offer.price_per_hour:.4f}",
                                "SpotInstanceType": "one-time",
                                "InstanceInterruptionBehavior": "terminate"},
            }
        return params

    def _instance(self, desc: Mapping[str, Any], offer: Offer, request_id: str) -> Instance:
        state, _ = self._state(desc)
        host = self._host(desc)
        if state is InstanceState.RUNNING and not host:
            state = InstanceState.PENDING
        market: Market = "spot" if desc.get("InstanceLifecycle") == "spot" else "on-demand"
        return Instance(
            instance_id=desc["InstanceId"], provider=self.name, offer=offer.name,
            request_id=request_id, state=state, price_per_hour=offer.price_per_hour,
            launched_at=_ts(desc.get("LaunchTime")),
            host=host if state is InstanceState.RUNNING else None,
            port=self.settings.ssh_port, user=self.settings.ssh_user, market=market,
            extra={"instance_type": desc.get("InstanceType"),
                   "private_ip": desc.get("PrivateIpAddress"),
                   "public_ip": desc.get("PublicIpAddress")},
        )

    def _state(self, desc: Mapping[str, Any]) -> tuple[InstanceState, str | None]:
        name = desc.get("State", {}).get("Name", "pending")
        tags = {t["Key"]: t["Value"] for t in desc.get("Tags", [])}
        released = tags.get(TERMINATE_TAG) == "true" or desc["InstanceId"] in self._released
        reason = (desc.get("StateReason", {}).get("Message")
                  or desc.get("StateTransitionReason") or None)
        if name == "pending":
            return InstanceState.PENDING, None
        if name == "running":
            return InstanceState.RUNNING, None
        if released:
            return InstanceState.TERMINATED, reason
        return InstanceState.LOST, reason or f"instance {name} outside fleetdeck"

    def _host(self, desc: Mapping[str, Any]) -> str | None:
        if self.settings.use_private_ip:
            return desc.get("PrivateIpAddress") or None
        return (desc.get("PublicIpAddress") or desc.get("PublicDnsName")
                or desc.get("PrivateIpAddress") or None)

    async def _call(self, op: str, **kwargs: Any) -> Any:
        fn = getattr(self._ec2, op)
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except self._client_error as e:
            err = getattr(e, "response", {}).get("Error", {})
            code = err.get("Code", "")
            if code in _NOT_FOUND:
                raise _NotFound(code) from None
            raise ProviderError(f'provider "{self.name}": EC2 {op} failed: {code}: '
                                f'{err.get("Message", e)}') from None
        except self._botocore_error as e:
            raise ProviderError(f'provider "{self.name}": EC2 {op} failed: {e}') from None


class _NotFound(Exception):
    pass


def _client_token(request_id: str) -> str:
    if len(request_id) <= 64 and request_id.isascii():
        return request_id
    return hashlib.sha256(request_id.encode()).hexdigest()[:64]


def _ts(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return 0.0
