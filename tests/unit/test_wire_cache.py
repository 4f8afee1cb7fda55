"""The server encodes a large answer shared between callers once (by identity)."""

from __future__ import annotations

import msgspec

from console.engine.api.replies import Submitted
from console.engine.protocol import encode
from console.engine.server import WireCache


def test_a_shared_list_is_encoded_once_and_reads_the_same() -> None:
    cache = WireCache()
    shared = [Submitted(ids=[i]) for i in range(WireCache.MIN_ITEMS)]
    first = cache.raw(shared)
    assert isinstance(first, msgspec.Raw) and cache.raw(shared) is first
    assert encode({"id": 1, "result": first}) == encode({"id": 1, "result": shared})
    copy = list(shared)  # an equal answer built anew is encoded anew
    assert cache.raw(copy) is not first
    small = shared[:3]
    assert cache.raw(small) is small  # small answers go as they are
    for _ in range(WireCache.KEEP + 1):  # bounded: the oldest entries go
        cache.raw(list(shared))
    assert cache.raw(shared) is not first
