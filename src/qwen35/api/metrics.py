"""Prometheus metrics of one server: HTTP answers, generations, tokens, latencies, engine occupancy.

Owns `Metrics` (one registry per app, so several apps in one process never share counters), `MetricsMiddleware`
(every HTTP answer by route and status, errors by type) and the engine collector (queue depth, running sequences,
KV blocks and DeltaNet state slots in use, prefix-cache counters, read at scrape time). Invariant: the token
counters are fed from the same usage the ledger records (`observe_generation` runs after the ledger wrote it), so
they reconcile with the ledger for the same requests; no label carries a key, an account or a prompt.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen35.serving.events import Usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)
TOKEN_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The instruments; `render()` is the /metrics body."""

    def __init__(self, engine: Any = None, known_paths: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.known_paths = frozenset(known_paths)
        r = self.registry
        self.http = Counter("qwen35_http_requests", "HTTP answers by route and status code",
                            ["route", "status"], registry=r)
        self.errors = Counter("qwen35_errors", "Errors by type (HTTP error answers and in-stream failures)",
                              ["type"], registry=r)
        self.generations = Counter("qwen35_generation_requests", "Generation requests settled in the ledger, by API "
                                   "and ledger status", ["api", "status"], registry=r)
        self.input_tokens = Counter("qwen35_input_tokens", "Prompt tokens (cached included)", ["api"], registry=r)
        self.cached_tokens = Counter("qwen35_cached_input_tokens", "Prompt tokens read from the prefix cache",
                                     ["api"], registry=r)
        self.output_tokens = Counter("qwen35_output_tokens", "Generated tokens (reasoning included)", ["api"],
                                     registry=r)
        self.reasoning_tokens = Counter("qwen35_reasoning_tokens", "Generated reasoning tokens", ["api"], registry=r)
        self.searches = Counter("qwen35_web_searches", "Web searches run (and billed)", ["api"], registry=r)
        self.ttft = Histogram("qwen35_time_to_first_token_seconds", "Admission to first generated event", ["api"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram("qwen35_time_per_output_token_seconds", "Mean time per output token after the first",
                              ["api"], buckets=TOKEN_LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("qwen35_e2e_request_latency_seconds", "Admission to settlement", ["api"],
                             buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("qwen35_requests_in_flight", "Generation requests admitted and not settled",
                               registry=r)
        if engine is not None and callable(getattr(engine, "stats", None)):
            r.register(EngineCollector(engine))

    def route(self, path: str) -> str:
        """A bounded label: known routes by name, everything else 'other' (no label per random path)."""
        return path if path in self.known_paths else "other"

    def observe_http(self, path: str, status: int, error_type: str | None) -> None:
        self.http.labels(self.route(path), str(status)).inc()
        if status >= 400:
            self.errors.labels(error_type or f"http_{status}").inc()

    def observe_generation(
        self, api: str, status: str, usage: Usage, ttft_s: float | None, e2e_s: float
    ) -> None:
        self.generations.labels(api, status).inc()
        self.input_tokens.labels(api).inc(usage.input_tokens)
        self.cached_tokens.labels(api).inc(usage.cached_input_tokens)
        self.output_tokens.labels(api).inc(usage.output_tokens)
        self.reasoning_tokens.labels(api).inc(usage.reasoning_tokens)
        self.searches.labels(api).inc(usage.web_search_calls)
        self.e2e.labels(api).observe(e2e_s)
        if ttft_s is not None:
            self.ttft.labels(api).observe(ttft_s)
            if usage.output_tokens > 1:
                self.tpot.labels(api).observe(max(0.0, e2e_s - ttft_s) / (usage.output_tokens - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class EngineCollector(Collector):
    """Engine occupancy, read when scraped (`engine.stats()`: an `EngineStats`). An engine of several replicas
    (`qwen35.cluster`) offers `replica_stats()` (replica id -> EngineStats): every series then carries a `replica`
    label, one per replica."""

    GAUGES = {
        "qwen35_queue_depth": ("Sequences waiting for admission", "waiting"),
        "qwen35_running_sequences": ("Sequences in the running batch", "running"),
        "qwen35_kv_blocks_total": ("KV cache blocks", "kv_blocks_total"),
        "qwen35_kv_blocks_used": ("KV cache blocks owned by a sequence", "kv_blocks_used"),
        "qwen35_state_slots_total": ("DeltaNet recurrent-state slots", "state_slots_total"),
        "qwen35_state_slots_used": ("DeltaNet recurrent-state slots in use", "state_slots_used"),
    }
    COUNTERS = {
        "qwen35_prefix_cache_queries": ("Prefix-cache lookups", "prefix_cache_queries"),
        "qwen35_prefix_cache_hits": ("Prefix-cache lookups that hit", "prefix_cache_hits"),
        "qwen35_prefix_cache_hit_tokens": ("Prompt tokens served from the prefix cache", "prefix_cache_hit_tokens"),
        "qwen35_preemptions": ("Sequences preempted for lack of KV blocks", "preemptions"),
    }

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        per_replica = getattr(self.engine, "replica_stats", None)
        if callable(per_replica):
            yield from self._collect_replicas(per_replica())
            return
        try:
            s = self.engine.stats()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the engine is gone
            s = None
        alive = getattr(self.engine, "alive", True)
        yield GaugeMetricFamily("qwen35_engine_alive", "1 while the engine thread runs", value=1 if alive else 0)
        if s is None:
            return
        for name, (doc, field) in self.GAUGES.items():
            yield GaugeMetricFamily(name, doc, value=getattr(s, field))
        for name, (doc, field) in self.COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=getattr(s, field))

    def _collect_replicas(self, stats: dict[str, Any]) -> Iterable[Metric]:
        alive = GaugeMetricFamily("qwen35_engine_alive", "1 per engine replica reporting", labels=["replica"])
        for replica in stats:
            alive.add_metric([replica], 1)
        yield alive
        for name, (doc, field) in self.GAUGES.items():
            gauge = GaugeMetricFamily(name, doc, labels=["replica"])
            for replica, s in stats.items():
                gauge.add_metric([replica], getattr(s, field))
            yield gauge
        for name, (doc, field) in self.COUNTERS.items():
            counter = CounterMetricFamily(name, doc, labels=["replica"])
            for replica, s in stats.items():
                counter.add_metric([replica], getattr(s, field))
            yield counter
        served = CounterMetricFamily("qwen35_replica_generations", "Engine requests this front sent to each replica",
                                     labels=["replica"])
        for replica, count in dict(getattr(self.engine, "served", {})).items():
            served.add_metric([replica], count)
        yield served
        yield CounterMetricFamily("qwen35_replica_retries", "Engine requests this front retried on another replica "
                                  "(their replica died before any output)", value=int(getattr(self.engine, "retries", 0)))


class MetricsMiddleware:
    """Pure ASGI (streaming-safe): counts every HTTP answer when its status goes out. Error handlers put the error's
    type in `scope["state"]["error_type"]`; it labels the error counter."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state") or {}
                self.metrics.observe_http(scope.get("path", ""), int(message["status"]), state.get("error_type"))
            await send(message)

        await self.app(scope, receive, counting_send)
