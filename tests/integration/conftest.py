"""Fixtures the integration modules share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from collectors.transport import SshTransport
from tests.bed.ssh import SshNode
from tests.integration.executor_kit import transport_for


@pytest.fixture
async def transport(node: SshNode) -> AsyncIterator[SshTransport]:
    """An SSH transport to the module's `node` fixture, closed after the test."""
    t = transport_for(node)
    yield t
    await t.close()
