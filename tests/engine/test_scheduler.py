"""Scheduler and cache bookkeeping without a model: budget, chunking, preemption, abort, forks, and `update` applying a
fake runner's plain output (tokens, stop ids, logprobs, thinking budget)."""

from __future__ import annotations

import pytest

from qwen35.engine.cache import BlockPool, SlotPool
from qwen35.engine.request import FinishReason, SamplingParams, ThinkingBudget
from qwen35.engine.scheduler import RunnerOutput, Scheduler
from qwen35.engine.sequence import Sequence, SequenceStatus


def make(num_blocks=16, block_size=4, slots=4, max_seqs=4, budget=8):
    blocks, slot_pool = BlockPool(num_blocks, block_size), SlotPool(slots)
    return Scheduler(blocks, slot_pool, max_seqs, budget), blocks, slot_pool


def seq(seq_id: int, prompt_len: int, n: int = 1) -> Sequence:
    return Sequence(seq_id=seq_id, request_id=f"r{seq_id}", sample_index=0, params=SamplingParams(n=n),
                    prompt_token_ids=list(range(prompt_len)), num_pending_forks=n - 1)


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
    out = sched.schedule()  # the whole prompt fits: the parent completes, so its children are forked this step
    assert slots.num_free == 1  # three held: the parent's and its two children's
    children = out.scheduled[0].children
    assert len(children) == 2 and all(c.block_table[0] == parent.block_table[0] for c in children)
    assert all(c.num_computed_tokens == 6 and parent.num_computed_tokens == 0 for c in children)
    assert len(out.block_copies) == 2 and len(out.slot_copies) == 2
    assert out.samplers == [parent, *children]
    assert blocks.num_free == 8 - 2 - 2
    for child in children:
        sched.finish(child)
    sched.finish(parent)
    assert blocks.num_free == 8 and slots.num_free == 4


def test_release_twice_is_detected():
    pool = BlockPool(2, 4)
    b = pool.allocate(1)
    pool.release(b)
    with pytest.raises(RuntimeError):
        pool.release(b)


# ---- update(): the runner's plain output applied to plain state ----------------------------------------------------


def run_step(sched: Scheduler, token_ids: list[int], logprobs=None, prompt_logprobs=None):
    """One engine step with a fake runner: every sampler gets the next of `token_ids`."""
    out = sched.schedule()
    samplers = out.samplers
    tokens = token_ids[: len(samplers)]
    lps = logprobs[: len(samplers)] if logprobs is not None else [None] * len(samplers)
    return out, sched.update(out, RunnerOutput(tokens, lps, prompt_logprobs or {}))


def test_update_reports_the_stop_id_apart_and_frees_at_once():
    sched, blocks, slots = make(budget=16)
    sched.eos_token_ids = (99,)
    sched.add_request("a", [1, 2, 3], SamplingParams(max_tokens=5, logprobs=0))
    _, outputs = run_step(sched, [7], [{7: -0.5}])
    (delta,) = outputs[0].sequences
    assert delta.new_token_ids == [7] and delta.new_logprobs == [{7: -0.5}] and not outputs[0].finished
    assert delta.finish_reason is None and delta.stop_token_id is None
    _, outputs = run_step(sched, [99], [{99: -0.25}])
    (delta,) = outputs[0].sequences
    assert delta.finish_reason is FinishReason.STOP and outputs[0].finished
    assert delta.new_token_ids == [] and delta.new_logprobs == []
    assert delta.stop_token_id == 99 and delta.stop_logprobs == {99: -0.25}
    assert delta.num_output_tokens == 2  # the stop id was generated: it counts
    assert not sched.requests and sched.num_unfinished == 0
    assert blocks.num_free == blocks.num_blocks and slots.num_free == slots.num_slots
    assert sched.schedule().finished_seq_ids == [0]  # the runner drops the sequence's state next step


def test_update_stop_id_before_min_tokens_is_a_token_and_max_tokens_is_length():
    sched, _, _ = make(budget=16)
    sched.add_request("m", [1, 2], SamplingParams(max_tokens=2, min_tokens=2, stop_token_ids=[5]))
    _, outputs = run_step(sched, [5])
    assert outputs[0].sequences[0].new_token_ids == [5] and outputs[0].sequences[0].finish_reason is None
    _, outputs = run_step(sched, [6])
    delta = outputs[0].sequences[0]
    assert delta.new_token_ids == [6] and delta.finish_reason is FinishReason.LENGTH and outputs[0].finished


def test_update_chunked_prompt_logprobs_sent_once_with_the_first_token():
    sched, _, _ = make(budget=4)
    sched.add_request("p", list(range(6)), SamplingParams(max_tokens=2, prompt_logprobs=0, ignore_eos=True))
    first = sched.schedule()  # 4 of 6 prompt tokens: rows for positions 1..4
    assert sched.update(first, RunnerOutput([], [], {0: [{1: -1.0}, {2: -2.0}, {3: -3.0}, {4: -4.0}]})) == []
    _, outputs = run_step(sched, [8], prompt_logprobs={0: [{5: -5.0}]})
    assert outputs[0].prompt_logprobs == [None, {1: -1.0}, {2: -2.0}, {3: -3.0}, {4: -4.0}, {5: -5.0}]
    _, outputs = run_step(sched, [9])
    assert outputs[0].prompt_logprobs is None and outputs[0].finished


def test_update_n_samples_fork_and_finish_together():
    sched, blocks, slots = make(num_blocks=8, block_size=4, slots=4, budget=64)
    sched.add_request("n", list(range(6)), SamplingParams(n=3, max_tokens=1))
    out, outputs = run_step(sched, [5, 6, 7])
    assert len(out.samplers) == 3
    (output,) = outputs
    assert [(d.index, d.new_token_ids) for d in output.sequences] == [(0, [5]), (1, [6]), (2, [7])]
    assert output.finished and not sched.requests
    assert blocks.num_free == 8 and slots.num_free == 4


def test_update_thinking_budget_forces_the_wind_down():
    sched, _, _ = make(budget=16)
    budget = ThinkingBudget(max_thinking_tokens=2, think_end_id=50, wind_down_ids=(40,))
    sched.add_request("t", [1], SamplingParams(max_tokens=10, thinking_budget=budget, ignore_eos=True))
    run_step(sched, [1])
    run_step(sched, [2])
    (seq,) = sched.running
    assert seq.forced_token_ids == [40, 50] and seq.num_reasoning_tokens == 2
    run_step(sched, [40])
    _, outputs = run_step(sched, [50])
    assert not seq.thinking and not seq.forced_token_ids and outputs[0].sequences[0].num_reasoning_tokens == 4


def _tenant_seq(seq_id: int, tenant: str) -> Sequence:
    return Sequence(seq_id=seq_id, request_id=f"r{seq_id}", sample_index=0, params=SamplingParams(tenant=tenant),
                    prompt_token_ids=list(range(3)), num_pending_forks=0)


def test_admission_is_fair_between_tenants_and_fcfs_within_one():
    sched, _, _ = make(num_blocks=32, slots=8, max_seqs=2, budget=64)
    burst = [_tenant_seq(i, "key-a") for i in range(1, 6)]  # one key queues five requests first
    late = _tenant_seq(9, "key-b")
    for s in [*burst, late]:
        sched.add(s)
    out = sched.schedule()  # a batch of two: key-a's first, then key-b (it has none running), not a's second
    assert [item.seq.seq_id for item in out.scheduled] == [1, 9]
    advance(out)
    sched.finish(late)
    out = sched.schedule()  # only key-a waits now: its oldest next
    assert [item.seq.seq_id for item in out.scheduled if item.seq.seq_id != 1] == [2]


def test_one_tenant_is_first_come_first_served():
    sched, _, _ = make(num_blocks=32, slots=8, max_seqs=3, budget=64)
    seqs = [_tenant_seq(i, "same") for i in range(1, 6)]
    for s in seqs:
        sched.add(s)
    assert [item.seq.seq_id for item in sched.schedule().scheduled] == [1, 2, 3]
