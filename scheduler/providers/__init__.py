"""Cloud providers for bursting: the interface (`base`), config, registry and implementations.

Importing this package never imports a cloud SDK; see `registry.provider_types()`.
"""

from scheduler.providers.base import (
    Instance,
    InstanceState,
    InstanceStatus,
    Offer,
    Provider,
    ProviderError,
    fleetdeck_tags,
)
from scheduler.providers.config import AwsSettings, CommandSettings, ProviderConfig
from scheduler.providers.registry import (
    ProviderType,
    build_provider,
    build_providers,
    provider_types,
    register,
    unavailable_offers,
)

__all__ = [
    "AwsSettings", "CommandSettings", "Instance", "InstanceState", "InstanceStatus", "Offer",
    "Provider", "ProviderConfig", "ProviderError", "ProviderType", "build_provider",
    "build_providers", "fleetdeck_tags", "provider_types", "register", "unavailable_offers",
]
