"""Files under the media root: written atomically, read and removed off the event loop.

Stored names are relative to ``settings.media.root``; a name that would leave
the root (``..``, an absolute path) is refused rather than followed.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


def _inside(root: Path, stored_name: str) -> Path:
    base = root.resolve()
    path = (base / stored_name).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"stored name {stored_name!r} leaves the media root")
    return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


async def write(root: Path, stored_name: str, data: bytes) -> None:
    await asyncio.to_thread(_write, _inside(root, stored_name), data)


async def read(root: Path, stored_name: str) -> bytes | None:
    """The file's bytes; None if it is missing."""
    path = _inside(root, stored_name)
    try:
        return await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        return None


async def remove(root: Path, stored_name: str) -> bool:
    """Delete the file; False if it was already gone."""
    path = _inside(root, stored_name)
    try:
        await asyncio.to_thread(path.unlink)
    except FileNotFoundError:
        return False
    return True
