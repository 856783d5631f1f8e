"""Owner liveness: the credit holds and concurrency slots of a dead server process are freed at once on its host
(pid + start time), by a stale heartbeat across hosts, and re-armed when a server declared dead comes back.

On both backends (PostgreSQL when QWEN35_TEST_POSTGRES_URL is set). The server-level test (kill -9 of a real
`qwen35 serve`) is tests/api/platform/test_kill9_restart.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import func, insert, select

from qwen35.platform import KeyLimits, Platform, RateLimited, schema
from qwen35.platform.liveness import this_process

MODEL = "qwen3-5-4b"
CHILD = r"""
import sys
from qwen35.platform import Platform
platform = Platform.open(database_url=sys.argv[1])
platform.start_instance()
key = platform.authenticate(sys.argv[2])
for _ in range(3):
    platform.admit(key, "chat.completions", "qwen3-5-4b", 100, 100)
print("HOLDING", platform.instance_id, flush=True)
sys.stdin.read()
"""


def _active(platform: Platform, key_id: str) -> int:
    a = schema.admissions
    with platform.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(a.c.key_id == key_id, a.c.state == "active")).scalar_one())


def test_kill_9_then_restart_frees_the_dead_process_slots_at_once(store_url: str) -> None:
    with Platform.open(database_url=store_url) as p:
        key, secret = p.create_key("limited", limits=KeyLimits(max_concurrent=3))
    child = subprocess.Popen([sys.executable, "-c", CHILD, store_url, secret], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("HOLDING"), child.stderr.read() if child.stderr else line
        with Platform.open(database_url=store_url) as p:
            with pytest.raises(RateLimited) as refused:
                p.admit(p.get_key(key.key_id), "chat.completions", MODEL, 10, 10)
            assert refused.value.limit == "concurrency"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    # a restarted server (a new instance on this host) frees the dead one's slots before serving anything
    with Platform.open(database_url=store_url) as p:
        assert _active(p, key.key_id) == 3
        p.start_instance(background=False)
        assert _active(p, key.key_id) == 0
        for _ in range(3):
            p.admit(p.get_key(key.key_id), "chat.completions", MODEL, 10, 10)


def test_zombie_counts_as_dead(store_url: str) -> None:
    """A killed child not yet reaped by its parent is a zombie: its pid exists, but it holds nothing."""
    with Platform.open(database_url=store_url) as p:
        key, secret = p.create_key("z", limits=KeyLimits(max_concurrent=3))
    child = subprocess.Popen([sys.executable, "-c", CHILD, store_url, secret], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().startswith("HOLDING")
        os.kill(child.pid, signal.SIGKILL)
        for _ in range(200):  # wait for the zombie state without reaping it
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    break
        with Platform.open(database_url=store_url) as p:
            p.start_instance(background=False)
            assert _active(p, key.key_id) == 0
    finally:
        child.kill()
        child.wait(timeout=30)


def _other_host_instance(platform: Platform, instance_id: str, heartbeat_ms: int) -> None:
    with platform.engine.begin() as conn:
        conn.execute(insert(schema.server_instances).values(
            instance_id=instance_id, host_key="elsewhere|boot|pid:[1]", pid=1, proc_start=1, state="alive",
            started_at_ms=heartbeat_ms, heartbeat_at_ms=heartbeat_ms,
        ))


def test_other_host_is_dead_only_once_its_heartbeat_is_stale(platform: Platform, clock) -> None:  # type: ignore[no-untyped-def]
    key, _ = platform.create_key("k", limits=KeyLimits(max_concurrent=2))
    _other_host_instance(platform, "srv_other", platform._now_ms())
    platform.instance_id = "srv_other"  # admissions as if made by that server
    for _ in range(2):
        platform.admit(key, "chat.completions", MODEL, 10, 10)
    platform.instance_id = None
    platform.start_instance(heartbeat_s=1, stale_after_s=30, background=False)
    assert _active(platform, key.key_id) == 2  # a fresh heartbeat on another host: alive, holds kept
    clock.advance(29)
    assert platform.heartbeat() == 0
    with pytest.raises(RateLimited):
        platform.admit(key, "chat.completions", MODEL, 10, 10)
    clock.advance(2)  # 31 s without a heartbeat
    assert platform.heartbeat() == 2
    assert _active(platform, key.key_id) == 0
    platform.admit(key, "chat.completions", MODEL, 10, 10)


def test_a_server_declared_dead_rearms_its_open_holds(store_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    a = Platform.open(database_url=store_url, clock=clock)
    b = Platform.open(database_url=store_url, clock=clock)
    try:
        key, _ = a.create_key("k", limits=KeyLimits(max_concurrent=1))
        a.start_instance(heartbeat_s=1, stale_after_s=10, background=False)
        a._identity = a._identity.__class__("paused-host|x|y", 1, 1)  # as if on another host: heartbeat only
        with a.engine.begin() as conn:
            conn.execute(schema.server_instances.update().values(host_key="paused-host|x|y"))
        admission = a.admit(key, "chat.completions", MODEL, 10, 10)
        b.start_instance(heartbeat_s=1, stale_after_s=10, background=False)
        clock.advance(11)  # a paused for longer than the stale limit
        assert b.heartbeat() == 1
        assert _active(a, key.key_id) == 0
        a.heartbeat()  # a is back: its request still runs, so its hold counts again
        assert _active(a, key.key_id) == 1
        with pytest.raises(RateLimited):
            b.admit(key, "chat.completions", MODEL, 10, 10)
        a.record_usage("req_rearmed", admission, "chat.completions", MODEL, 10, 0, 5)
        assert _active(a, key.key_id) == 0
    finally:
        a.close()
        b.close()


def test_stopping_marks_the_instance_and_frees_what_it_held(store_url: str) -> None:
    p = Platform.open(database_url=store_url)
    key, _ = p.create_key("k", limits=KeyLimits(max_concurrent=1))
    instance = p.start_instance(background=True)
    p.admit(key, "chat.completions", MODEL, 10, 10)
    p.close()
    with Platform.open(database_url=store_url) as q:
        assert _active(q, key.key_id) == 0
        i = schema.server_instances
        with q.engine.connect() as conn:
            assert conn.execute(select(i.c.state).where(i.c.instance_id == instance)).scalar_one() == "stopped"


def test_identity_is_this_process() -> None:
    me = this_process()
    assert me.pid == os.getpid()
    if os.path.exists("/proc/self/stat"):
        assert me.proc_start is not None and "?" not in me.host_key
