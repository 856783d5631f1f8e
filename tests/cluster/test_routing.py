"""Prefix-affinity placement (pure): longest recorded prefix wins, rendezvous hashing spreads the rest and agrees
across routers, imbalance is bounded, a lost replica's prefixes move."""

from __future__ import annotations

import random

from qwen35.cluster.routing import PrefixPlacement, prefix_hashes, rendezvous_order

REPLICAS = ("r-a", "r-b", "r-c")


def _prompt(seed: int, n: int = 100) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1000, 200_000) for _ in range(n)]


def test_prefix_hashes_chain_full_blocks_then_the_tail() -> None:
    tokens = list(range(70))
    hashes = prefix_hashes(tokens, 32)
    assert len(hashes) == 3  # two full blocks, then the 6-token tail
    assert prefix_hashes(tokens[:64] + [9, 9], 32)[:2] == hashes[:2]  # a shared prefix shares its chain
    changed = prefix_hashes([7] + tokens[1:], 32)
    assert all(a != b for a, b in zip(changed, hashes))  # a change early changes every later hash
    assert prefix_hashes(tokens[:5], 32) and prefix_hashes([], 32) == []


def test_a_recorded_prefix_wins_over_the_hash_owner() -> None:
    placement = PrefixPlacement(block_tokens=16)
    loads = dict.fromkeys(REPLICAS, 0)
    shared = _prompt(1, 64)
    owner = placement.choose(shared + _prompt(2, 10), loads).replica
    placement.record(shared + _prompt(2, 10), "r-c" if owner != "r-c" else "r-b")
    moved = "r-c" if owner != "r-c" else "r-b"
    for suffix in range(3, 8):  # every prompt with that 64-token prefix follows the replica that computed it
        chosen = placement.choose(shared + _prompt(suffix, 20), loads)
        assert chosen.replica == moved and chosen.reason == "prefix" and chosen.matched_blocks == 4


def test_unseen_prompts_spread_by_rendezvous_hashing_and_routers_agree() -> None:
    loads = dict.fromkeys(REPLICAS, 0)
    one, two = PrefixPlacement(), PrefixPlacement()  # two fronts, no shared state
    chosen = [one.choose(_prompt(seed), loads).replica for seed in range(300)]
    assert chosen == [two.choose(_prompt(seed), loads).replica for seed in range(300)]
    counts = {r: chosen.count(r) for r in REPLICAS}
    assert min(counts.values()) > 60, counts  # ~100 each


def test_the_imbalance_bound_moves_a_hot_prefix_to_the_lightest_replica() -> None:
    placement = PrefixPlacement(block_tokens=16, imbalance_abs=4, imbalance_rel=0.5)
    hot = _prompt(5, 80)
    placement.record(hot, "r-a")
    assert placement.choose(hot, {"r-a": 4, "r-b": 0, "r-c": 1}).replica == "r-a"  # 4 above: still within
    chosen = placement.choose(hot, {"r-a": 5, "r-b": 0, "r-c": 1})
    assert (chosen.replica, chosen.reason) == ("r-b", "load")
    assert placement.choose(hot, {"r-a": 30, "r-b": 20, "r-c": 25}).replica == "r-a"  # relative bound: 10 <= 10


def test_a_lost_replica_is_forgotten_and_only_its_keys_move() -> None:
    placement = PrefixPlacement(block_tokens=16)
    prompts = [_prompt(seed, 40) for seed in range(200)]
    full = dict.fromkeys(REPLICAS, 0)
    before = [placement.choose(p, full).replica for p in prompts]
    for p, r in zip(prompts, before):
        placement.record(p, r)
    placement.forget("r-b")
    survivors = {"r-a": 0, "r-c": 0}
    after = [placement.choose(p, survivors).replica for p in prompts]
    assert "r-b" not in after
    assert all(a == b for a, b in zip(after, before) if b != "r-b")  # the others' prefixes stay put
    assert "r-b" not in placement._table.values()


def test_the_table_is_bounded() -> None:
    placement = PrefixPlacement(block_tokens=16, max_entries=50)
    for seed in range(40):
        placement.record(_prompt(seed, 64), "r-a")
    assert len(placement) == 50


def test_rendezvous_order_is_a_permutation_and_one_replica_takes_all() -> None:
    assert sorted(rendezvous_order(b"k", list(REPLICAS))) == sorted(REPLICAS)
    assert PrefixPlacement().choose(_prompt(1), {"solo": 3}).reason == "only"
