"""Owner liveness: a server process registers as an instance, heartbeats, and frees the holds of dead instances.

Owns the `server_instances` table and the `owner_id` / `orphaned` side of `admissions`, mixed into `Platform`.
Imports nothing from qwen35 outside the platform.

Rule (documented for operators): every admission made by a registered server carries its instance id. An
instance is dead when (a) its heartbeat is older than `stale_after_s` (any host: PostgreSQL shared by several
hosts), or (b) it lives on this host (same hostname, boot id and pid namespace) and its pid is gone, a zombie, or a
different process (start time differs) - which is known at once after a kill -9, so a restarted server frees
its predecessor's holds and concurrency slots before it serves its first request. The holds of a dead instance
become `orphaned` (no longer counted); an instance wrongly declared dead (a pause longer than `stale_after_s`)
re-arms its still-open holds on its next heartbeat. Admissions without an owner (library / CLI use) keep the
hold TTL as their only expiry.
Invariant: only `active` admissions count for credit holds and concurrency; an instance is declared dead only with
a compare-and-set on the heartbeat it was seen with, so a heartbeat that lands in between wins.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, delete, insert, select, update

from qwen35.platform import schema
from qwen35.platform.errors import PlatformError, StoreUnavailable
from qwen35.platform.store import write_tx

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0
_FORGET_AFTER_MS = 24 * 3_600_000  # rows of stopped/dead instances are deleted a day later
_i, _a = schema.server_instances, schema.admissions


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a process is on its host: `host_key` = hostname | boot id | pid namespace, plus pid and start time."""

    host_key: str
    pid: int
    proc_start: int | None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, None when it does not exist."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name (in parentheses) may hold spaces
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def this_process() -> ProcessIdentity:
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = "?"
    boot = _read("/proc/sys/kernel/random/boot_id") or "?"
    stat = _proc_stat(os.getpid())
    return ProcessIdentity(f"{socket.gethostname()}|{boot}|{pid_ns}"[:256], os.getpid(),
                           None if stat is None else stat[1])


def known_dead(host_key: str, pid: int, proc_start: int | None, here: ProcessIdentity) -> bool:
    """True only when the process is provably gone: on this host, and its pid is free, a zombie or reused."""
    if host_key != here.host_key or "?" in host_key.split("|")[1:] or proc_start is None:
        return False  # another host (or one we cannot identify): only the heartbeat can tell
    stat = _proc_stat(pid)
    return stat is None or stat[0] in ("Z", "X") or stat[1] != proc_start


class Liveness:
    """Mixin of Platform; relies on its engine and clock."""

    _engine: Engine
    _now_ms: Callable[[], int]
    _store_ok: Callable[[], None]
    _store_failed: Callable[[BaseException], None]

    def __init__(self) -> None:
        self.instance_id: str | None = None
        self.stale_after_ms = int(STALE_AFTER_S * 1000)
        self._identity = this_process()
        self._maintenance: threading.Thread | None = None
        self._stop = threading.Event()
        self._periodic: list[tuple[float, Callable[[], object]]] = []

    # --- registration ---------------------------------------------------------------------------------------

    def start_instance(
        self, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S, background: bool = True
    ) -> str:
        """Register this process as a server instance, free the holds of dead instances, and (background=True)
        heartbeat every `heartbeat_s` in a daemon thread. Later admissions carry the returned instance id."""
        if self.instance_id is not None:
            return self.instance_id
        if not 0 < heartbeat_s < stale_after_s:
            raise ValueError("heartbeat_s must be positive and shorter than stale_after_s")
        self.stale_after_ms = int(stale_after_s * 1000)
        instance_id = "srv_" + secrets.token_hex(12)
        now = self._now_ms()
        me = self._identity
        with write_tx(self._engine) as conn:
            conn.execute(insert(_i).values(
                instance_id=instance_id, host_key=me.host_key, pid=me.pid, proc_start=me.proc_start, state="alive",
                started_at_ms=now, heartbeat_at_ms=now,
            ))
        self.instance_id = instance_id
        freed = self.sweep_dead_owners()
        if freed:
            log.warning("released %d credit holds / concurrency slots of dead server processes", freed)
        if background:
            self.every(heartbeat_s, self.heartbeat)
            self._maintenance = threading.Thread(target=self._maintain, name="platform-maintenance", daemon=True)
            self._maintenance.start()
        return instance_id

    def every(self, interval_s: float, task: Callable[[], object]) -> None:
        """Run `task` every `interval_s` on the maintenance thread (tasks registered before start_instance)."""
        self._periodic.append((interval_s, task))

    def _maintain(self) -> None:
        due = [0.0] * len(self._periodic)
        tick = min(interval for interval, _ in self._periodic)
        elapsed = 0.0
        while not self._stop.wait(tick):
            elapsed += tick
            for n, (interval, task) in enumerate(self._periodic):
                if elapsed + 1e-9 < due[n]:
                    continue
                due[n] = elapsed + interval
                try:
                    task()
                except PlatformError as exc:  # the store is down: health reports it, the next tick retries
                    log.warning("platform maintenance: %s", exc)
                except Exception:  # noqa: BLE001 - a background task must never kill the thread
                    log.exception("platform maintenance task failed")

    def stop_instance(self) -> None:
        """Stop heartbeating and mark this instance stopped; its open holds (none after a drain) are released."""
        self._stop.set()
        if self._maintenance is not None:
            self._maintenance.join(timeout=10)
            self._maintenance = None
        if self.instance_id is None:
            return
        instance_id, self.instance_id = self.instance_id, None
        with write_tx(self._engine) as conn:
            conn.execute(update(_i).where(_i.c.instance_id == instance_id).values(state="stopped"))
            conn.execute(update(_a).where(_a.c.owner_id == instance_id, _a.c.state == "active")
                         .values(state="orphaned"))

    # --- heartbeat and sweep --------------------------------------------------------------------------------

    def heartbeat(self) -> int:
        """Prove this instance alive (re-arming holds of a wrongly declared death), then sweep; returns the
        number of holds freed."""
        if self.instance_id is None:
            return 0
        try:
            self._beat()
        except StoreUnavailable as exc:
            self._store_failed(exc)
            raise
        self._store_ok()
        return self.sweep_dead_owners()

    def _beat(self) -> None:
        assert self.instance_id is not None
        now = self._now_ms()
        with write_tx(self._engine) as conn:
            state = conn.execute(
                select(_i.c.state).where(_i.c.instance_id == self.instance_id).with_for_update()
            ).scalar()
            if state is None or state == "dead":
                me = self._identity
                if state is None:  # pruned while we were away: register again under the same id
                    conn.execute(insert(_i).values(
                        instance_id=self.instance_id, host_key=me.host_key, pid=me.pid, proc_start=me.proc_start,
                        state="alive", started_at_ms=now, heartbeat_at_ms=now,
                    ))
                rearmed = conn.execute(
                    update(_a).where(_a.c.owner_id == self.instance_id, _a.c.state == "orphaned")
                    .values(state="active")
                ).rowcount
                log.warning("this server was declared dead (no heartbeat for %d s); %d open holds re-armed",
                            self.stale_after_ms // 1000, rearmed or 0)
            conn.execute(update(_i).where(_i.c.instance_id == self.instance_id)
                         .values(state="alive", heartbeat_at_ms=now))

    def sweep_dead_owners(self) -> int:
        """Declare dead the instances that are (stale heartbeat, or provably gone on this host) and orphan the
        holds of every non-alive instance; returns the number of holds freed."""
        now = self._now_ms()
        here = self._identity
        freed = 0
        with write_tx(self._engine) as conn:
            rows = conn.execute(select(_i).where(_i.c.instance_id != (self.instance_id or ""))).all()
            for row in rows:
                alive = row.state == "alive"
                if alive and now - int(row.heartbeat_at_ms) <= self.stale_after_ms and not known_dead(
                    row.host_key, int(row.pid), None if row.proc_start is None else int(row.proc_start), here
                ):
                    continue
                if alive:
                    declared = conn.execute(
                        update(_i).where(_i.c.instance_id == row.instance_id, _i.c.state == "alive",
                                         _i.c.heartbeat_at_ms == row.heartbeat_at_ms)
                        .values(state="dead")
                    ).rowcount
                    if not declared:
                        continue  # it heartbeated in between: alive after all
                freed += int(conn.execute(
                    update(_a).where(_a.c.owner_id == row.instance_id, _a.c.state == "active")
                    .values(state="orphaned")
                ).rowcount or 0)
            conn.execute(delete(_i).where(_i.c.state != "alive", _i.c.heartbeat_at_ms < now - _FORGET_AFTER_MS))
        return freed

