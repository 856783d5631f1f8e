"""The engine on a tiny real checkpoint: equal to transformers, batching, n > 1, seeds, limits, leaks, errors."""

from __future__ import annotations

import pytest
import torch

from qwen35.engine.args import EngineArgs
from qwen35.engine.build import build_engine
from qwen35.engine.request import (
    ContextLengthError,
    EngineError,
    EngineOverloadedError,
    FinishReason,
    SamplingParams,
    ThinkingBudget,
)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", max_model_len=512, max_num_seqs=8,
                                   max_num_batched_tokens=64, progress=False))


def prompt(length: int, seed: int) -> list[int]:
    return torch.randint(0, 248000, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


def run(engine, requests: dict[str, tuple[list[int], SamplingParams]]) -> dict[str, dict]:
    for request_id, (ids, params) in requests.items():
        engine.add_request(request_id, ids, params)
    results: dict[str, dict] = {}
    while engine.has_unfinished():
        for out in engine.step():
            r = results.setdefault(out.request_id, {"samples": {}, "prompt_logprobs": None, "finished": False})
            if out.prompt_logprobs is not None:
                r["prompt_logprobs"] = out.prompt_logprobs
            r["finished"] = out.finished
            for d in out.sequences:
                s = r["samples"].setdefault(d.index, {"tokens": [], "logprobs": [], "finish": None, "reasoning": 0,
                                                      "stop": None, "stop_logprobs": None, "num_output": 0})
                assert s["finish"] is None, "no delta after a sample finished"
                s["tokens"] += d.new_token_ids
                s["logprobs"] += d.new_logprobs or []
                s["finish"] = d.finish_reason or s["finish"]
                s["reasoning"] = d.num_reasoning_tokens
                s["stop"], s["stop_logprobs"] = d.stop_token_id, d.stop_logprobs
                s["num_output"] = d.num_output_tokens
    return results


def assert_free(engine) -> None:
    assert engine.blocks.num_free == engine.blocks.num_blocks
    assert engine.slots.num_free == engine.slots.num_slots
    assert not engine.requests and engine.scheduler.num_unfinished == 0


def test_batched_greedy_equals_reference(engine, reference_logprobs):
    greedy = SamplingParams(max_tokens=10, temperature=0, logprobs=3, prompt_logprobs=2, ignore_eos=True)
    lengths = {"short": 5, "many-chunks": 200, "mid": 37, "one": 1}
    requests = {name: (prompt(n, i), greedy) for i, (name, n) in enumerate(lengths.items())}
    results = run(engine, requests)
    for name, (ids, _) in requests.items():
        sample = results[name]["samples"][0]
        want = reference_logprobs(ids + sample["tokens"])
        n = len(ids)
        assert sample["tokens"] == want[n - 1 : -1].argmax(-1).tolist()
        for j, (token, lps) in enumerate(zip(sample["tokens"], sample["logprobs"])):
            assert len(lps) >= 3 and token in lps
            for t, lp in lps.items():
                assert abs(lp - want[n - 1 + j, t].item()) < 1e-4
        plp = results[name]["prompt_logprobs"]
        assert len(plp) == n and plp[0] is None
        for j in range(1, n):
            assert abs(plp[j][ids[j]] - want[j - 1, ids[j]].item()) < 1e-4
        assert sample["finish"] is FinishReason.LENGTH
    assert_free(engine)


def test_n_samples_share_prompt_and_match_reference(engine, reference_logprobs):
    ids = prompt(45, 7)
    results = run(engine, {"n": (ids, SamplingParams(n=3, max_tokens=6, temperature=1.0, seed=11, logprobs=0,
                                                     ignore_eos=True))})
    samples = results["n"]["samples"]
    assert sorted(samples) == [0, 1, 2] and results["n"]["finished"]
    assert len({tuple(s["tokens"]) for s in samples.values()}) > 1
    for s in samples.values():
        want = reference_logprobs(ids + s["tokens"])
        for j, (token, lps) in enumerate(zip(s["tokens"], s["logprobs"])):
            assert abs(lps[token] - want[len(ids) - 1 + j, token].item()) < 1e-4
    assert_free(engine)


def test_seeded_sampling_reproducible_and_batch_independent(engine):
    params = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.9, seed=1234, ignore_eos=True)
    alone = run(engine, {"a": (prompt(12, 1), params)})["a"]["samples"][0]["tokens"]
    crowd = run(engine, {"x": (prompt(30, 2), SamplingParams(max_tokens=8, temperature=1.0, ignore_eos=True)),
                         "a": (prompt(12, 1), params)})["a"]["samples"][0]["tokens"]
    other = run(engine, {"a": (prompt(12, 1), SamplingParams(max_tokens=8, temperature=1.0, top_p=0.9, seed=99,
                                                             ignore_eos=True))})["a"]["samples"][0]["tokens"]
    assert alone == crowd
    assert alone != other


def test_stop_token_max_tokens_and_min_tokens(engine, reference_logprobs):
    ids = prompt(9, 3)
    first = run(engine, {"g": (ids, SamplingParams(max_tokens=3, temperature=0, ignore_eos=True))})["g"]
    target = first["samples"][0]["tokens"][1]
    stopped = run(engine, {"s": (ids, SamplingParams(max_tokens=10, temperature=0, logprobs=0,
                                                     stop_token_ids=[target]))})["s"]
    s = stopped["samples"][0]
    # The stop-token convention: the id that stopped it is reported apart, never among the new tokens.
    assert s["finish"] is FinishReason.STOP and s["stop"] == target and len(s["tokens"]) <= 1
    assert s["tokens"] + [target] == first["samples"][0]["tokens"][: len(s["tokens"]) + 1]
    assert s["num_output"] == len(s["tokens"]) + 1 and len(s["logprobs"]) == len(s["tokens"])
    assert target in s["stop_logprobs"]
    held = run(engine, {"m": (ids, SamplingParams(max_tokens=4, min_tokens=4, temperature=0,
                                                  stop_token_ids=[target]))})["m"]["samples"][0]
    assert len(held["tokens"]) == 4 and target not in held["tokens"]
    assert_free(engine)


def test_thinking_budget_forces_graceful_end(engine):
    think_end, wind = 248069, (11, 12, 13)
    params = SamplingParams(max_tokens=30, temperature=1.0, seed=5, ignore_eos=True,
                            thinking_budget=ThinkingBudget(max_thinking_tokens=6, think_end_id=think_end,
                                                           wind_down_ids=wind))
    s = run(engine, {"t": (prompt(10, 4), params)})["t"]["samples"][0]
    end = s["tokens"].index(think_end)
    assert end <= 6 + len(wind)
    if end == 6 + len(wind):  # the budget ran out: the wind-down was forced, then </think>
        assert tuple(s["tokens"][6:end]) == wind
    assert s["reasoning"] == end + 1
    assert len(s["tokens"]) == 30  # the answer follows


def test_no_leak_over_many_requests_and_aborts(engine):
    for i in range(40):
        engine.add_request(f"leak{i}", prompt(5 + i % 50, i), SamplingParams(max_tokens=5, n=1 + i % 3,
                                                                          temperature=1.0, ignore_eos=True))
        engine.step()
        if i % 3 == 0:
            engine.abort_request(f"leak{i}")
        if i % 5 == 0:
            engine.abort_request(f"leak{i - 2}")
    while engine.has_unfinished():
        engine.step()
    assert_free(engine)


def test_bad_input_is_typed_and_others_keep_running(engine):
    engine.add_request("good", prompt(6, 8), SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))
    with pytest.raises(EngineError, match="at least one token"):
        engine.add_request("empty", [], SamplingParams())
    with pytest.raises(ContextLengthError):
        engine.add_request("long", prompt(600, 1), SamplingParams())
    with pytest.raises(ContextLengthError):
        engine.add_request("long2", prompt(500, 1), SamplingParams(max_tokens=100))
    with pytest.raises(EngineError) as err:
        engine.add_request("temp", prompt(3, 1), SamplingParams(temperature=5.0))
    assert err.value.param == "temperature"
    with pytest.raises(EngineError):
        engine.add_request("vocab", [10**9], SamplingParams())
    with pytest.raises(EngineError, match="already running"):
        engine.add_request("good", prompt(3, 1), SamplingParams())
    done = []
    while engine.has_unfinished():
        done += [o.request_id for o in engine.step() if o.finished]
    assert done == ["good"]
    assert_free(engine)


def test_preemption_gives_same_greedy_tokens(tiny_checkpoint):
    block_bytes = 2 * 2 * 16 * 2 * 32 * 4  # k+v, 2 attention layers, 16 tokens, 2 kv heads, dim 32, fp32
    small = build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", max_model_len=96, max_num_seqs=4,
                                    max_num_batched_tokens=32, kv_cache_gb=8 * block_bytes / 2**30,
                                    progress=False))  # 128 tokens for three 60-token ones
    assert small.blocks.num_blocks == 8
    params = SamplingParams(max_tokens=20, temperature=0, ignore_eos=True)
    requests = {f"p{i}": (prompt(40, 20 + i), params) for i in range(3)}
    crowded = run(small, requests)
    assert small.scheduler.num_preemptions > 0
    for request_id, (ids, _) in requests.items():
        alone = run(small, {request_id: (ids, params)})
        assert crowded[request_id]["samples"][0]["tokens"] == alone[request_id]["samples"][0]["tokens"]
    assert_free(small)


def test_queue_full_is_overloaded(tiny_checkpoint):
    eng = build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", max_model_len=64, max_num_seqs=2, max_waiting=2,
                                  progress=False))
    assert eng.config.max_waiting == 2
    eng.add_request("a", [1, 2], SamplingParams(max_tokens=2))
    eng.add_request("b", [1, 2], SamplingParams(max_tokens=2))
    with pytest.raises(EngineOverloadedError):
        eng.add_request("c", [1, 2], SamplingParams(max_tokens=2))
    while eng.has_unfinished():
        eng.step()
    assert_free(eng)
