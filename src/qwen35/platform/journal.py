"""The usage journal: a local append-only file that keeps settlements the store could not take, until it can.

Owns the journal files (`<dir>/<random>.jsonl`, one per process, JSON lines, fsync'ed before `append` returns) and
the adoption of a dead process's file. Imports nothing from qwen35.
Invariant: an entry is in the file, on disk, before the caller is told it is safe; a file is truncated only after
every entry in it reached the store (replay is idempotent: usage records are keyed by request id, releases only
touch active admissions). Each live process holds an exclusive flock on its own file, so another process adopts
(replays, then deletes) a file only when its writer is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Entry = dict[str, Any]


class UsageJournal:
    """This process's journal in `directory` (created on first use)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._path = self.directory / f"{os.getpid()}-{secrets.token_hex(6)}.jsonl"
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.num_pending = 0

    def _open(self) -> int:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh name: never contended
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the new file's name survives a crash too
            finally:
                os.close(dir_fd)
            self._fd = fd
        return self._fd

    def append(self, entry: Entry) -> None:
        """Write one entry durably (write + fsync); raises OSError when the disk refuses."""
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = self._open()
            size = os.lseek(fd, 0, os.SEEK_END)
            try:
                if os.write(fd, line) != len(line):
                    raise OSError("short write to the usage journal")
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)  # no torn line for the next entry to be glued to
                raise
            self.num_pending += 1

    def replay(self, apply: Callable[[Entry], None]) -> int:
        """Apply this process's entries (each idempotently); truncate the file once all went through. Returns the
        number applied; stops at the first failure (the store is still down) and keeps the file."""
        with self._lock:
            if self._fd is None or self.num_pending == 0:
                return 0
            entries = list(_read_entries(self._path))
            for entry in entries:
                apply(entry)
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self.num_pending = 0
            return len(entries)

    def adopt_orphans(self, apply: Callable[[Entry], None]) -> int:
        """Replay and delete the journal files of processes that are gone (their flock is free)."""
        if not self.directory.is_dir():
            return 0
        applied = 0
        for path in sorted(self.directory.glob("*.jsonl")):
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue  # adopted and deleted by another process meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive: it replays its own
                entries = list(_read_entries(path))
                for entry in entries:
                    apply(entry)
                applied += len(entries)
                path.unlink()
                log.warning("replayed %d usage journal entries of a dead server (%s)", len(entries), path.name)
            finally:
                os.close(fd)
        return applied

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                if self.num_pending == 0:
                    self._path.unlink(missing_ok=True)


def _read_entries(path: Path) -> Iterator[Entry]:
    with path.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a torn last line: its append never returned, so nobody was told it was safe
            try:
                yield json.loads(raw)
            except ValueError:
                log.error("skipping an unreadable usage journal line in %s", path)
