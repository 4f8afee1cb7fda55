"""Where the running demo says where its config is, so `fleetdeck --demo COMMAND` finds it
without importing the demo itself (its fleet and history modules cost a second on a busy
machine; the command needs one small file)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def pointer_path() -> Path:
    """Where the running demo of this user says where its config is (one per user)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"fleetdeck-demo-{os.getuid()}.path"


def announce(config: Path) -> None:
    """Point `fleetdeck --demo COMMAND` at this demo's config (the latest demo wins)."""
    tmp = pointer_path().with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(str(config) + "\n")
    tmp.chmod(0o600)
    tmp.replace(pointer_path())


def withdraw(config: Path) -> None:
    """Remove the pointer if it still names this demo's config."""
    with contextlib.suppress(OSError):
        if pointer_path().read_text().strip() == str(config):
            pointer_path().unlink()


def running_config() -> Path | None:
    """The config of the demo running now, if any (its pointer names an existing file)."""
    try:
        path = Path(pointer_path().read_text().strip())
    except OSError:
        return None
    return path if path.is_file() else None
