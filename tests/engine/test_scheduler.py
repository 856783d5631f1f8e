"""Scheduler and cache bookkeeping without a model: budget, chunking, preemption, abort, forks."""

from __future__ import annotations

import pytest

from qwen35.engine.cache import BlockPool, SlotPool
from qwen35.engine.request import SamplingParams
from qwen35.engine.scheduler import Scheduler
from qwen35.engine.sequence import Sequence, SequenceStatus


def make(num_blocks=16, block_size=4, slots=4, max_seqs=4, budget=8):
    blocks, slot_pool = BlockPool(num_blocks, block_size), SlotPool(slots)
    return Scheduler(blocks, slot_pool, max_seqs, budget), blocks, slot_pool


def seq(seq_id: int, prompt_len: int, n: int = 1) -> Sequence:
    return Sequence(seq_id=seq_id, request_id=f"r{seq_id}", sample_index=0, params=SamplingParams(n=n),
                    prompt_token_ids=list(range(prompt_len)), arrival=float(seq_id), num_pending_forks=n - 1)


def advance(out) -> None:
    """What the engine does after a step: tokens computed; completing sequences get a sampled token."""
    for item in out.scheduled:
        done = item.completes
        item.seq.num_computed_tokens += item.num_new_tokens
        if done:
            item.seq.output_token_ids.append(7)


def test_budget_chunks_long_prompt_and_admits_fcfs():
    sched, _, _ = make(budget=8)
    a, b = seq(1, 20), seq(2, 3)
    sched.add(a)
    sched.add(b)
    out = sched.schedule()
    assert [(s.seq.seq_id, s.num_new_tokens) for s in out.scheduled] == [(1, 8)]
    assert out.num_batched_tokens <= 8
    advance(out)
    out = sched.schedule()
    assert [(s.seq.seq_id, s.num_new_tokens) for s in out.scheduled] == [(1, 8)]
    advance(out)
    out = sched.schedule()  # 4 tokens of a left, then b's 3 fit in the budget
    assert [(s.seq.seq_id, s.num_new_tokens) for s in out.scheduled] == [(1, 4), (2, 3)]
    assert all(s.completes for s in out.scheduled)
    advance(out)
    out = sched.schedule()  # decode: one token each
    assert [(s.seq.seq_id, s.num_new_tokens) for s in out.scheduled] == [(1, 1), (2, 1)]


def test_blocks_cover_scheduled_tokens():
    sched, blocks, _ = make(block_size=4, budget=16)
    a = seq(1, 10)
    sched.add(a)
    out = sched.schedule()
    assert len(a.block_table) == 3 and blocks.num_free == 13
    advance(out)
    for _ in range(3):
        advance(sched.schedule())
    assert len(a.block_table) * 4 >= a.num_computed_tokens


def test_preemption_frees_newest_and_recomputes():
    sched, blocks, slots = make(num_blocks=4, block_size=4, budget=16)
    a, b = seq(1, 8), seq(2, 7)
    sched.add(a)
    sched.add(b)
    out = sched.schedule()
    assert blocks.num_free == 0 and len(out.scheduled) == 2
    advance(out)
    out = sched.schedule()  # a needs a 3rd block for token 9: b (newest) is preempted
    assert out.preempted == [b]
    assert b.status is SequenceStatus.WAITING and b.num_computed_tokens == 0 and b.block_table == []
    assert [s.seq for s in out.scheduled] == [a]
    assert slots.num_free == 3
    sched.finish(a)
    assert blocks.num_free == 4
    out = sched.schedule()  # b comes back and recomputes prompt + its output token
    assert out.scheduled[0].seq is b and out.scheduled[0].num_new_tokens == 8


def test_abort_waiting_and_running_frees_everything():
    sched, blocks, slots = make(budget=4)
    a, b = seq(1, 6), seq(2, 6)
    sched.add(a)
    sched.add(b)
    sched.schedule()
    sched.finish(a)
    sched.finish(b)
    assert sched.num_unfinished == 0
    assert blocks.num_free == blocks.num_blocks and slots.num_free == slots.num_slots


def test_admission_waits_for_slots_and_max_seqs():
    sched, _, _ = make(slots=2, max_seqs=4, budget=64)
    for i in range(3):
        sched.add(seq(i, 2))
    out = sched.schedule()
    assert len(out.scheduled) == 2 and len(sched.waiting) == 1
    parent = seq(9, 2, n=3)
    sched2, _, slots2 = make(slots=2, budget=64)
    sched2.add(parent)
    assert sched2.schedule().is_empty  # n=3 needs three slots
    assert slots2.num_free == 2


def test_fork_shares_full_blocks_and_copies_partial():
    sched, blocks, slots = make(num_blocks=8, block_size=4, slots=4, budget=64)
    parent = seq(1, 6, n=3)
    sched.add(parent)
    out = sched.schedule()
    assert slots.num_free == 1  # three reserved
    parent.num_computed_tokens += out.scheduled[0].num_new_tokens
    plan = sched.fork(parent)
    assert len(plan.children) == 2 and all(c.block_table[0] == parent.block_table[0] for c in plan.children)
    assert len(plan.block_copies) == 2 and len(plan.slot_copies) == 2
    assert blocks.num_free == 8 - 2 - 2
    for child in plan.children:
        sched.finish(child)
    sched.finish(parent)
    assert blocks.num_free == 8 and slots.num_free == 4


def test_release_twice_is_detected():
    pool = BlockPool(2, 4)
    b = pool.allocate(1)
    pool.release(b)
    with pytest.raises(RuntimeError):
        pool.release(b)
