"""KV cache and max_model_len sizing (engine.memory) as pure arithmetic, with the 4B's shapes (8 attention layers,
4 KV heads of 256: 64 KiB per token in float32, 32 KiB in bfloat16) on a 24 GiB machine; plus the tiny checkpoint
end to end: the default length is the model's when memory allows, a bf16 KV cache stays close to float32."""

from __future__ import annotations

import pytest
import torch

from qwen35.engine.args import EngineArgs
from qwen35.engine.build import build_engine
from qwen35.engine.memory import GiB, KvPlan, MemoryInfo, host_memory, plan_kv_cache
from qwen35.engine.request import SamplingParams

MiB = 2**20
FP32_BLOCK = 16 * 2 * 8 * 4 * 256 * 4  # 16 tokens x K and V x 8 layers x 4 heads x 256 dims x 4 bytes = 1 MiB
BF16_BLOCK = FP32_BLOCK // 2
WS_FP32 = 2 * 4 * 256 * 4  # one layer's gathered K and V per token
WS_BF16 = 2 * 4 * 256 * (2 + 4)  # stored bf16 + its float32 upcast
MACHINE = MemoryInfo(total_bytes=24 * GiB, available_bytes=19 * GiB)  # after an int8 load (~5 GiB resident)
STATES = int(1.178 * GiB)  # 16 GDN state slots + 8 prefix checkpoints of the 4B (fp32), as measured


def _plan(block: int = FP32_BLOCK, ws: int = WS_FP32, memory: MemoryInfo | None = MACHINE, model: int = 5 * GiB,
          fixed: int = GiB, seqs: int = 16, **kw) -> KvPlan:
    return plan_kv_cache(model_max_len=262144, block_size=16, block_bytes=block, max_num_seqs=seqs, memory=memory,
                         model_bytes=model, fixed_bytes=fixed, workspace_bytes_per_token=ws,
                         workspace_fixed_bytes=ws * seqs * 8192, **kw)


def _used(plan: KvPlan, block: int, ws: int, model: int = 5 * GiB) -> int:
    """Weights + states + reserve + KV pool + attention workspace of a max_model_len sequence."""
    return model + GiB + GiB + plan.kv_bytes(block) + ws * (plan.max_model_len + 16 * 8192)


def test_default_length_is_what_the_memory_holds_and_fits_the_share():
    plan = _plan()
    assert plan.memory_bound and plan.max_model_len == plan.num_blocks * 16
    share = min(MACHINE.available_bytes + 5 * GiB, int(0.9 * MACHINE.total_bytes))  # our part, weights included
    assert _used(plan, FP32_BLOCK, WS_FP32) <= share
    assert _used(plan, FP32_BLOCK, WS_FP32) > share - FP32_BLOCK - 16 * WS_FP32  # and no more than a block is left
    assert 150_000 < plan.max_model_len < 262144  # float32 KV, int8 weights, 24 GiB: ~190K tokens


def test_256k_by_flag_needs_a_bf16_kv_cache_on_24_gib_and_gets_it():
    with pytest.raises(ValueError, match="262144 needs 16.0 GiB of KV cache.*--kv-cache-dtype bfloat16"):
        _plan(requested_len=262144)
    plan = _plan(block=BF16_BLOCK, ws=WS_BF16, requested_len=262144)
    assert plan.max_model_len == 262144 and not plan.memory_bound
    assert _used(plan, BF16_BLOCK, WS_BF16) <= int(0.9 * 24 * GiB)
    assert plan.num_blocks * 16 >= 262144


# The 4B on this project's 24 GB machine (MemTotal 23.54 GiB), measured 2026-12-03 after `load_model(...,
# dummy_weights=True)`: resident weights (model_bytes) and MemAvailable after the load, per weight format; with
# the README's default lengths (bf16 KV cache, 16 sequences, 8 prefix checkpoints, utilization 0.9).
FOUR_B = {"int8": (5.407, 17.08, 262144), "int4": (3.449, 19.36, 262144), "bf16": (9.078, 13.76, 200896)}


@pytest.mark.parametrize("fmt", sorted(FOUR_B))
def test_the_4b_on_a_24_gb_machine(fmt):
    model, available, default_len = FOUR_B[fmt]
    memory = MemoryInfo(int(23.54 * GiB), int(available * GiB))
    kw = dict(block=BF16_BLOCK, ws=WS_BF16, memory=memory, model=int(model * GiB), fixed=STATES)
    assert _plan(**kw).max_model_len == default_len
    if default_len == 262144:
        assert _plan(**kw, requested_len=262144).max_model_len == 262144
    else:  # bf16 weights: 256K needs fewer sequences and no prefix checkpoints, and a 0.95 share
        with pytest.raises(ValueError, match="262144 needs 8.0 GiB"):
            _plan(**kw, requested_len=262144)
        kw.update(fixed=int(4 * 0.049 * GiB), seqs=4)
        assert _plan(**kw, requested_len=262144, utilization=0.95).max_model_len == 262144
    fp32_kv = _plan(memory=memory, model=int(model * GiB), fixed=STATES)  # --kv-cache-dtype float32
    assert fp32_kv.memory_bound and fp32_kv.max_model_len < 262144


def test_utilization_and_available_memory_both_bound_the_pool():
    roomy = MemoryInfo(total_bytes=24 * GiB, available_bytes=24 * GiB)
    half = _plan(memory=roomy, utilization=0.5)  # 12 GiB - 5 GiB weights - 1 fixed - 1 reserve - 1 workspace
    assert half.kv_bytes(FP32_BLOCK) + WS_FP32 * half.max_model_len <= 4 * GiB
    busy = MemoryInfo(total_bytes=24 * GiB, available_bytes=8 * GiB)  # others use the RAM: never count on it
    assert _plan(memory=busy).kv_bytes(FP32_BLOCK) <= 5 * GiB
    with pytest.raises(ValueError, match="no memory left"):
        _plan(memory=MemoryInfo(24 * GiB, 2 * GiB))


def test_the_pool_is_capped_at_max_num_seqs_full_sequences():
    plan = plan_kv_cache(model_max_len=4096, block_size=16, block_bytes=4096, max_num_seqs=8, memory=MACHINE,
                         model_bytes=10 * MiB, fixed_bytes=MiB, workspace_bytes_per_token=256)
    assert plan.num_blocks == 8 * 256 + 8 and plan.max_model_len == 4096 and not plan.memory_bound


def test_explicit_kv_cache_size_and_the_fallback_without_memory_facts():
    plan = _plan(kv_cache_bytes=GiB)  # --kv-cache-gb 1: 1024 blocks of 1 MiB
    assert (plan.num_blocks, plan.max_model_len, plan.memory_bound) == (1024, 16384, True)
    with pytest.raises(ValueError, match="--kv-cache-gb allows 16384 tokens"):
        _plan(kv_cache_bytes=GiB, requested_len=32768)
    assert _plan(memory=None).num_blocks == 1024  # not Linux: the 1 GiB fallback
    assert _plan(requested_len=8192).max_model_len == 8192


def test_host_memory_reads_this_machine():
    info = host_memory()
    if info is None:
        pytest.skip("no /proc/meminfo")
    assert 0 < info.available_bytes <= info.total_bytes


def _greedy(engine, ids: list[int]) -> list[tuple[int, float]]:
    engine.add_request("k", ids, SamplingParams(max_tokens=6, temperature=0, logprobs=0, ignore_eos=True))
    got: list[tuple[int, float]] = []
    while engine.has_unfinished():
        for out in engine.step():
            for d in out.sequences:
                got += [(t, lp[t]) for t, lp in zip(d.new_token_ids, d.new_logprobs)]
    return got


def test_tiny_checkpoint_default_length_and_a_bf16_kv_cache(tiny_checkpoint):
    dense = build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", progress=False))
    assert dense.config.max_model_len == 4096  # the tiny model's own length: memory is plentiful
    assert dense.config.num_kv_blocks == 16 * (4096 // 16) + 16
    narrow = build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", kv_cache_dtype="bfloat16",
                                     max_model_len=512, progress=False))
    assert next(iter(narrow.runner.cache.key.values())).dtype == torch.bfloat16
    ids = torch.randint(0, 248000, (90,), generator=torch.Generator().manual_seed(5)).tolist()
    want, got = _greedy(dense, ids), _greedy(narrow, ids)
    assert [t for t, _ in got] == [t for t, _ in want]
    assert max(abs(a - b) for (_, a), (_, b) in zip(got, want)) < 0.05
    with pytest.raises(ValueError, match="no memory left|needs"):
        build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", memory_utilization=1e-6,
                                progress=False))
