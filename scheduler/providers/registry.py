"""Provider registry: type names -> provider classes, tolerant of missing optional SDKs.

`provider_types()` lists every known type with whether it can be used here and why not
(e.g. `aws` without boto3). `build_providers()` turns `[[policies.burst.providers]]` entries
into live providers; an unavailable one is left out with its reason, never an ImportError.
Other types (a simulator's) can be added with `register()`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from scheduler.providers.base import Offer, Provider, ProviderError
from scheduler.providers.config import ProviderConfig

Factory = Callable[[ProviderConfig, Sequence[Offer]], Provider]
Availability = Callable[[], str | None]  # None: usable, else the reason it is not


@dataclass(frozen=True, slots=True)
class ProviderType:
    """A provider type as `fleetdeck` lists it."""

    name: str
    available: bool
    reason: str | None = None  # why it is unavailable


def _command(cfg: ProviderConfig, offers: Sequence[Offer]) -> Provider:
    from scheduler.providers.command import CommandProvider

    assert cfg.command is not None  # ProviderConfig checks it
    return CommandProvider(cfg.name, cfg.command, offers)


def _aws(cfg: ProviderConfig, offers: Sequence[Offer]) -> Provider:
    from scheduler.providers.aws import AwsProvider

    assert cfg.aws is not None
    return AwsProvider(cfg.name, cfg.aws, offers)


def _aws_available() -> str | None:
    reason: str | None = importlib.import_module("scheduler.providers.aws").unavailable_reason()
    return reason


_TYPES: dict[str, tuple[Factory, Availability]] = {
    "command": (_command, lambda: None),
    "aws": (_aws, _aws_available),
}


def register(type_name: str, factory: Factory, availability: Availability = lambda: None) -> None:
    """Add (or replace) a provider type."""
    _TYPES[type_name] = (factory, availability)


def provider_types() -> dict[str, ProviderType]:
    """Every known type, available or not, with the reason."""
    out: dict[str, ProviderType] = {}
    for name, (_, avail) in sorted(_TYPES.items()):
        reason = avail()
        out[name] = ProviderType(name, reason is None, reason)
    return out


def build_provider(cfg: ProviderConfig, offers: Sequence[Offer] = ()) -> Provider:
    """One provider from its config; `ProviderError` when its type is unknown or unavailable."""
    entry = _TYPES.get(cfg.type)
    if entry is None:
        raise ProviderError(f'provider "{cfg.name}": unknown type {cfg.type!r} '
                            f"(known: {', '.join(sorted(_TYPES))})")
    factory, avail = entry
    reason = avail()
    if reason is not None:
        raise ProviderError(f'provider "{cfg.name}" ({cfg.type}) unavailable: {reason}')
    return factory(cfg, [o for o in offers if o.provider == cfg.name])


def build_providers(configs: Sequence[ProviderConfig], offers: Sequence[Offer] = ()
                    ) -> tuple[dict[str, Provider], dict[str, str]]:
    """Live providers by name, and the names left out with the reason (shown by explain)."""
    live: dict[str, Provider] = {}
    missing: dict[str, str] = {}
    for cfg in configs:
        try:
            live[cfg.name] = build_provider(cfg, offers)
        except ProviderError as e:
            missing[cfg.name] = str(e)
    for o in offers:
        if o.provider not in live and o.provider not in missing:
            missing[o.provider] = f'provider "{o.provider}" of offer "{o.name}" is not configured'
    return live, missing


def unavailable_offers(offers: Sequence[Offer], missing: Mapping[str, str]) -> dict[str, str]:
    """Offer name -> why it cannot be used, for the burst policy."""
    return {o.name: missing[o.provider] for o in offers if o.provider in missing}
