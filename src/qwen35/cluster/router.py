"""The Ray Serve request router of the engine deployment: prefix affinity over `routing.PrefixPlacement`.

Owns the mapping between Ray's replicas and the placement rule: a generation (`EngineCall`) goes to the replica
that holds its prompt's prefix (load as the tie-breaker, imbalance bounded); a `ControlCall` goes to the replica
named in it; replicas a retry must avoid are left out. Load is the router's own count of requests it routed and
not completed (one router per front process; fronts agree through the rendezvous rule). Ray falls back to the
next rank when the first is full. Each router registers itself (`registry.ROUTERS`) so its front can read the replicas'
routing stats (their engine occupancy) for /metrics.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ray.serve.request_router import FIFOMixin, PendingRequest, ReplicaID, RequestRouter, RunningReplica

from qwen35.cluster import registry
from qwen35.cluster.calls import ControlCall, EngineCall
from qwen35.cluster.routing import PrefixPlacement


class PrefixAffinityRouter(FIFOMixin, RequestRouter):
    def initialize_state(self, block_tokens: int = 32, imbalance_abs: int = 4, imbalance_rel: float = 0.5,
                         max_entries: int = 200_000, **_: Any) -> None:
        self.placement = PrefixPlacement(block_tokens=block_tokens, max_entries=max_entries,
                                         imbalance_abs=imbalance_abs, imbalance_rel=imbalance_rel)
        self.in_flight: Counter[str] = Counter()  # replica -> generations routed and not completed
        self.routed: Counter[str] = Counter()  # replica -> generations routed
        self._open: dict[str, str] = {}  # Ray's internal request id -> replica, generations only
        registry.ROUTERS.add(self)

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        call = pending_request.args[0] if pending_request is not None and pending_request.args else None
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        if isinstance(call, ControlCall):
            target = by_id.get(call.target_replica)
            return [[target]] if target is not None else [candidate_replicas]
        if not isinstance(call, EngineCall):
            return [candidate_replicas]
        loads = {rid: self.in_flight[rid] for rid in by_id if rid not in call.exclude}
        if not loads:
            return [candidate_replicas]
        placement = self.placement.choose(call.prompt_token_ids, loads)
        rest = sorted((r for r in loads if r != placement.replica), key=lambda r: loads[r])
        return [[by_id[placement.replica]], [by_id[r] for r in rest]] if rest else [[by_id[placement.replica]]]

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        call = pending_request.args[0] if pending_request.args else None
        if isinstance(call, EngineCall):
            rid = replica_id.unique_id
            self.placement.record(call.prompt_token_ids, rid)
            self.in_flight[rid] += 1
            self.routed[rid] += 1
            self._open[pending_request.metadata.internal_request_id] = rid

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        rid = self._open.pop(internal_request_id, None)  # control calls complete too: they were never counted
        if rid is not None and self.in_flight[rid] > 0:
            self.in_flight[rid] -= 1

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.placement.forget(replica_id.unique_id)
        self.in_flight.pop(replica_id.unique_id, None)

    def replica_stats(self) -> dict[str, dict[str, Any]]:
        """Each live replica's last routing stats (engine occupancy), by replica id."""
        return {rid: dict(r.routing_stats or {}) for rid, r in ((r.replica_id.unique_id, r)
                                                                for r in self.curr_replicas.values())}
