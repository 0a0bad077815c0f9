"""The large payloads of a SQLite cache: files in a folder beside the database.

Each file is written whole under a temporary name and renamed into place before the row
that names it commits, and read back mapped, not copied (SQLite is slow at big blobs,
the file system is not). A file is named by its key and a random suffix, so a row never
names a file another process is writing; a file no row names (its writer was killed) is
swept once it is old enough. Only a name of that form, inside the folder once resolved,
is ever read or removed: a database whose rows were tampered with cannot make the store
read or delete anything else (such a row reads as an empty payload, a miss).
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import re
import secrets
import time
from collections.abc import Container, Iterable
from pathlib import Path
from typing import BinaryIO

from ._store import Payload, payload_size

#: A file no row names is only removed when older than this (it may be a write whose
#: row is about to commit).
ORPHAN_AGE_S = 3600.0

#: A key used as it is in a file's name; any other is hashed first.
_PLAIN_KEY = re.compile(r"[0-9A-Za-z_]{1,64}")
#: The names the folder makes: the key (or its hash), a random suffix, ``.bin``.
_NAME = re.compile(r"[0-9A-Za-z_]{1,64}-[0-9a-f]{8}\.bin")


class BlobFolder:
    """The folder of one cache's large payloads (created on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, key: str, payload: Payload) -> str:
        """Write ``payload`` as a new file for ``key``; return its name."""
        self.path.mkdir(parents=True, exist_ok=True)
        stem = key if _PLAIN_KEY.fullmatch(key) else hashlib.sha256(key.encode()).hexdigest()
        name = f"{stem}-{secrets.token_hex(4)}.bin"
        temporary = self.path / (name + ".tmp")
        try:
            with temporary.open("wb") as file:
                _write_payload(file, payload)
            temporary.replace(self.path / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return name

    def owns(self, name: str) -> bool:
        """Whether ``name`` is one this folder makes, and names a file inside it."""
        if not _NAME.fullmatch(name):
            return False
        try:
            return (self.path / name).resolve().parent == self.path.resolve()
        except OSError:
            return False

    def read(self, name: str, size: int) -> Payload:
        """File ``name``, mapped (one that is gone, of the wrong size or not the folder's
        own reads as an empty payload: a miss the run warns about)."""
        if not self.owns(name):
            return b""
        try:
            with (self.path / name).open("rb") as file:
                mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return b""
        if len(mapped) != size:
            mapped.close()
            return b""
        return memoryview(mapped)

    def unlink(self, names: Iterable[str]) -> None:
        """Remove the files ``names`` (each one the folder's own that can be)."""
        for name in names:
            if not self.owns(name):  # (a row naming a file the store did not make)
                continue
            with contextlib.suppress(OSError):  # gone already, or still mapped elsewhere
                (self.path / name).unlink(missing_ok=True)

    def sweep(self, named: Container[str], *, now: float | None = None) -> None:
        """Remove the folder's own files (and temporaries) no row ``named``, once older
        than `ORPHAN_AGE_S`."""
        if not self.path.is_dir():
            return
        cutoff = (time.time() if now is None else now) - ORPHAN_AGE_S
        for path in self.path.iterdir():
            with contextlib.suppress(OSError):
                ours = _NAME.fullmatch(path.name.removesuffix(".tmp"))
                if ours and path.name not in named and path.stat().st_mtime < cutoff:
                    path.unlink()


def _write_payload(file: BinaryIO, payload: Payload) -> None:
    """``payload`` into ``file``; a whole numpy buffer (a large frame is one) by numpy,
    whose ``tofile`` is faster than one ``write`` of it."""
    owner = payload.obj if isinstance(payload, memoryview) else None
    tofile = getattr(owner, "tofile", None)
    if tofile is not None and memoryview(owner).nbytes == payload_size(payload):  # type: ignore[arg-type]
        tofile(file)
    else:
        file.write(payload)
