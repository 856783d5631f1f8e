"""Scale-out on Ray Serve, end to end on loopback: a local Ray cluster (head only, loopback), two engine replicas
of the tiny checkpoint, two HTTP fronts, one platform store (PostgreSQL when QWEN35_TEST_POSTGRES_URL is set, as
.ci/run does; else SQLite), driven with the official openai SDK and plain HTTP.

Shows: requests spread over both replicas; requests sharing a long prefix land on one replica and hit its cache;
a replica killed mid-load (ray.kill) leaves the others serving, every request with exactly one ledger record and
no active hold; a per-key rate limit holds across the two fronts; /metrics carries a replica label.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

pytest.importorskip("ray.serve")

from qwen35.cluster.flags import parse_serve_flags  # noqa: E402
from qwen35.cluster.launch import APP_NAME, deploy, start_ray  # noqa: E402
from qwen35.platform import Platform  # noqa: E402
from qwen35.platform.keys import KeyLimits  # noqa: E402

pytestmark = pytest.mark.slow
NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}
LONG = 1500  # tokens per stream of the kill test: still running when the replica dies
SERIES = re.compile(r'^(qwen35_[a-z_]+)\{replica="([^"]+)"\} ([0-9.e+-]+)$', re.M)


@dataclass
class Cluster:
    base_url: str
    platform: Platform
    key: str
    flags: list[str]

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=key or self.key, max_retries=0, timeout=120)

    def replica_series(self, name: str) -> dict[str, float]:
        text = httpx.get(f"{self.base_url}/metrics", timeout=30).text
        return {replica: float(value) for metric, replica, value in SERIES.findall(text) if metric == name}

    def wait_series(self, name: str, done: object, timeout_s: float = 60) -> dict[str, float]:
        """Poll /metrics (replica stats refresh every few seconds) until `done(series)` holds."""
        deadline = time.monotonic() + timeout_s
        series: dict[str, float] = {}
        while time.monotonic() < deadline:
            series = self.replica_series(name)
            if done(series):  # type: ignore[operator]
                return series
            time.sleep(0.5)
        raise AssertionError(f"{name} never satisfied the condition: {series}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _store_url(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":  # one host: the embedded store serves every front, no database server
        yield f"sqlite:///{tmp / 'platform.sqlite3'}"
        return
    base = os.environ.get("QWEN35_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("QWEN35_TEST_POSTGRES_URL not set: the PostgreSQL-backed cluster is not tested")
    from sqlalchemy import create_engine, text

    from qwen35.platform.store import resolve_url

    url = resolve_url(None, base)
    schema = "c_" + secrets.token_hex(6)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cluster(request: pytest.FixtureRequest, tiny_checkpoint: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    for url in _store_url(request.param, tmp):
        port = _free_port()
        flags = ["--model", str(tiny_checkpoint), "--host", "127.0.0.1", "--port", str(port), "--database-url", url,
                 "--kv-cache-gb", "0.1", "--max-model-len", "4096", "--replicas", "2", "--front-replicas", "2",
                 "--replica-threads", "1", "--route-imbalance", "8", "--drain-timeout", "60", "--log-level", "warning"]
        args = parse_serve_flags(flags)
        platform = Platform.open(database_url=url)  # migrated before the fronts open it
        start_ray(args, num_cpus=4)
        from ray import serve

        try:
            base = deploy(args, flags)
            yield Cluster(base, platform, platform.create_key("cluster-test")[1], flags)
        finally:
            import ray

            serve.shutdown()
            ray.shutdown()
            platform.close()


def _chat(client: openai.OpenAI, content: str, max_tokens: int = 4) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="qwen3-5-4b", messages=[{"role": "user", "content": content}],
                                          max_tokens=max_tokens, temperature=0, extra_body=NO_THINKING)


def _total(series: dict[str, float]) -> float:
    return sum(series.values())


def test_requests_spread_over_both_replicas_and_metrics_carry_the_replica(cluster: Cluster) -> None:
    client = cluster.client()
    _chat(client, "warm up")
    before = cluster.wait_series("qwen35_prefix_cache_queries_total", lambda s: len(s) == 2 and _total(s) >= 1)
    prompts = [f"question {i}: what is {secrets.token_hex(4)}?" for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda p: _chat(client, p), prompts))
    assert all(a.choices[0].finish_reason in ("length", "stop") for a in answers)
    after = cluster.wait_series("qwen35_prefix_cache_queries_total",
                                lambda s: _total(s) >= _total(before) + 20)
    per_replica = {r: after[r] - before.get(r, 0) for r in after}
    assert len(per_replica) == 2, per_replica
    assert min(per_replica.values()) >= 3, f"20 distinct prompts should use both replicas: {per_replica}"
    slots = cluster.replica_series("qwen35_state_slots_total")
    assert set(slots) == set(after) and all(v > 0 for v in slots.values())


def test_requests_sharing_a_long_prefix_land_on_one_replica_and_hit_its_cache(cluster: Cluster) -> None:
    """A conversation's turns share its long opening (the engine keeps a state checkpoint near the end of each
    prompt, so a later prompt that extends an earlier one reuses it): five requests, one replica, four hits."""
    client = cluster.client()
    before = cluster.wait_series("qwen35_prefix_cache_hits_total", lambda s: len(s) == 2)
    opening = [{"role": "system", "content": "You are a careful assistant for the shipping desk. " * 24},
               {"role": "user", "content": "Here is the manifest; wait for my questions."}]
    first = client.chat.completions.create(model="qwen3-5-4b", messages=opening, max_tokens=4, temperature=0,
                                           extra_body=NO_THINKING)
    history = [*opening, {"role": "assistant", "content": first.choices[0].message.content or ""}]
    cached = []
    for i in range(4):
        reply = client.chat.completions.create(
            model="qwen3-5-4b", max_tokens=2, temperature=0, extra_body=NO_THINKING,
            messages=[*history, {"role": "user", "content": f"order {i} status?"}])
        details = reply.usage.prompt_tokens_details if reply.usage else None
        cached.append(details.cached_tokens if details else 0)
    assert first.usage is not None and first.usage.prompt_tokens > 250
    assert all((c or 0) >= 200 for c in cached), cached
    after = cluster.wait_series("qwen35_prefix_cache_hits_total",
                                lambda s: _total(s) >= _total(before) + 4)
    gained = sorted(after[r] - before.get(r, 0) for r in after)
    assert gained == [0, 4], f"the shared prefix should live on one replica: {after} vs {before}"


def _replica_actors(deployment: str = "engine") -> list[str]:
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    return [n for n in names if f"{APP_NAME}#{deployment}#" in n]


def _stream(base_url: str, key: str, i: int, started: threading.Event | None = None,
            max_tokens: int = 64) -> dict[str, object]:
    """One streamed chat completion over raw HTTP: its id, chunks, and how it ended (`started` set at the first
    token). Each `i` opens its own first 32-token block, so the router spreads streams by its hash rule."""
    content = f"story {i}: " + "once upon a time " * 8
    body = {"model": "qwen3-5-4b", "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "ignore_eos": True, "stream": True, "chat_template_kwargs": {"enable_thinking": False}}
    out: dict[str, object] = {"id": None, "chunks": 0, "error": None, "finish": None, "status": None}
    try:
        _read_stream(base_url, key, body, out, started)
    except httpx.HTTPError as exc:  # the front serving it died: the connection ends without [DONE]
        out["error"] = f"connection: {exc!r}"
    return out


def _read_stream(base_url: str, key: str, body: dict[str, object], out: dict[str, object],
                 started: threading.Event | None) -> None:
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=120,
                      headers={"authorization": f"Bearer {key}"}) as response:
        out["status"] = response.status_code
        out["request_id"] = response.headers.get("x-request-id")
        if response.status_code != 200:
            out["error"] = response.read().decode()
            return
        import json

        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                out["error"] = chunk["error"]
                continue
            out["id"] = chunk["id"]
            out["chunks"] = int(out["chunks"]) + 1  # type: ignore[call-overload]
            if started is not None and out["chunks"] == 2:
                started.set()
            for choice in chunk.get("choices", []):
                out["finish"] = choice.get("finish_reason") or out["finish"]


def _active_holds(platform: Platform) -> int:
    from sqlalchemy import func, select

    from qwen35.platform import schema

    with platform.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.admissions)
                                .where(schema.admissions.c.state == "active")).scalar_one())


def test_a_replica_killed_mid_load_loses_nothing_and_bills_once(cluster: Cluster) -> None:
    import ray

    actors = sorted(_replica_actors())
    assert len(actors) == 2
    started = [threading.Event() for _ in range(8)]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        running = [pool.submit(_stream, cluster.base_url, cluster.key, i, started[i], LONG) for i in range(8)]
        assert all(event.wait(60) for event in started), "every stream should be producing tokens"
        # The router decides where each stream runs (distinct first blocks: usually both replicas): whichever
        # streams the killed one ran end with an error naming it, every other stream goes on to its length.
        victim = actors[0].rsplit("#", 1)[1]
        ray.kill(ray.get_actor(actors[0], namespace="serve"), no_restart=True)
        later = [pool.submit(_stream, cluster.base_url, cluster.key, 100 + i) for i in range(4)]
        results = [f.result() for f in running + later]
    assert all(r["status"] == 200 for r in results), results
    lost = [r for r in results[:8] if r["error"] is not None]
    for r in lost:  # lost mid-stream: the client hears why, in the family's in-stream error, naming the replica
        assert "engine" in str(r["error"]).lower() and victim in str(r["error"]), (victim, r)
    for r in results:
        if r not in lost:
            assert r["error"] is None and r["finish"] == "length", r
    assert all(r["error"] is None for r in results[8:]), "requests sent after the kill must succeed"
    for r in results:  # exactly one ledger record per request (primary key: at most one), none lost
        record = _wait_usage(cluster.platform, str(r["id"]))
        assert record.output_tokens > 0  # type: ignore[attr-defined]
        if r not in lost:
            assert record.output_tokens == (LONG if r in results[:8] else 64)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while _active_holds(cluster.platform) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _active_holds(cluster.platform) == 0
    assert _chat(cluster.client(), "after the kill").choices[0].finish_reason in ("length", "stop")


def _wait_usage(platform: Platform, request_id: str, timeout_s: float = 30) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = platform.get_usage(request_id)
        if record is not None:
            return record
        time.sleep(0.1)
    raise AssertionError(f"no usage record for {request_id}")


def test_a_rate_limit_holds_across_the_fronts(cluster: Cluster) -> None:
    """Nine requests at once against a 5-per-minute key: five pass, four get 429, whichever front admits them.
    Ray's proxy picks the front, so a round may land on one front alone: up to three rounds, a fresh key each,
    until one round used both fronts (the count must hold in every round)."""
    from sqlalchemy import select

    from qwen35.platform import schema

    def attempt(i: int) -> int:
        try:
            _chat(client, f"limited {i}", max_tokens=8)
            return 200
        except openai.RateLimitError:
            return 429

    owners: set[str] = set()
    for round_ in range(3):
        info, secret = cluster.platform.create_key(f"limited-{round_}", limits=KeyLimits(requests_per_minute=5))
        client = cluster.client(secret)
        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            codes = list(pool.map(attempt, range(9)))
        assert codes.count(200) == 5 and codes.count(429) == 4, codes
        a = schema.admissions
        with cluster.platform.engine.connect() as conn:
            owners = set(conn.execute(select(a.c.owner_id).where(a.c.key_id == info.key_id)).scalars())
        if len(owners) == 2:
            break
    assert len(owners) == 2, f"both fronts should have admitted some of a key's requests: {owners}"


def test_scaling_down_drains_the_replica_it_stops(cluster: Cluster) -> None:
    """Redeploying with one engine replica stops the other gracefully: its running streams finish (within
    --drain-timeout), nothing new is sent to it, the front stays as it is."""
    from ray import serve

    from qwen35.cluster.app import build_application

    deadline = time.monotonic() + 120  # after the kill test Ray may still be starting the replacement replica
    while len(_replica_actors()) != 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    cluster.wait_series("qwen35_state_slots_total", lambda s: len(s) == 2, timeout_s=120)
    engines, fronts = set(_replica_actors()), set(_replica_actors("front"))
    assert len(engines) == 2
    started = [threading.Event() for _ in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        running = [pool.submit(_stream, cluster.base_url, cluster.key, 300 + i, started[i], 300) for i in range(6)]
        assert all(event.wait(60) for event in started)
        serve.run(build_application(cluster.flags, replicas=1), name=APP_NAME, route_prefix="/", blocking=False)
        results = [f.result() for f in running]
    assert all(r["error"] is None and r["finish"] == "length" for r in results), results
    deadline = time.monotonic() + 60
    while len(_replica_actors()) != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(_replica_actors()) == 1 and set(_replica_actors()) < engines, "the replica that stays is not replaced"
    assert set(_replica_actors("front")) == fronts, "a new replica count alone leaves the fronts running"
    assert _chat(cluster.client(), "after the scale-down").choices[0].finish_reason in ("length", "stop")


def test_a_front_killed_mid_stream_leaves_no_hold_behind(cluster: Cluster) -> None:
    """The fronts own the ledger records and holds: one killed while its streams run ends them (the client's
    connection closes), the other front's liveness sweep frees its holds, the other front's streams finish and
    are billed once. Last in the module: Ray replaces the front afterwards."""
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    fronts = [n for n in names if f"{APP_NAME}#front#" in n]
    assert len(fronts) == 2
    started = [threading.Event() for _ in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        running = [pool.submit(_stream, cluster.base_url, cluster.key, 200 + i, started[i], 400) for i in range(6)]
        assert all(event.wait(60) for event in started)
        assert _active_holds(cluster.platform) >= 6
        ray.kill(ray.get_actor(fronts[0], namespace="serve"), no_restart=True)
        results = [f.result() for f in running]
    cut = [r for r in results if r["error"] is not None]
    kept = [r for r in results if r["error"] is None]
    assert cut and kept, f"both fronts should have carried some of the streams: {results}"
    for r in kept:
        assert r["finish"] == "length"
        assert _wait_usage(cluster.platform, str(r["id"])).output_tokens == 400  # type: ignore[attr-defined]
    deadline = time.monotonic() + 40  # the survivor's sweep runs every 5 s and sees the dead pid on this host
    while _active_holds(cluster.platform) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _active_holds(cluster.platform) == 0
