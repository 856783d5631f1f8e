"""Automatic prefix caching on the hybrid model: KV blocks by hash chain + GDN state checkpoints."""

from __future__ import annotations

import torch

from qwen35.engine.args import EngineArgs
from qwen35.engine.build import build_engine
from qwen35.engine.cache import BlockPool
from qwen35.engine.prefix_cache import PrefixCache
from qwen35.engine.request import SamplingParams
from qwen35.engine.sequence import Sequence


def _seq(tokens: list[int], blocks: list[int]) -> Sequence:
    seq = Sequence(seq_id=1, request_id="r", sample_index=0, params=SamplingParams(), prompt_token_ids=tokens)
    seq.block_table = blocks
    seq.num_computed_tokens = len(tokens)
    return seq


def test_hit_needs_blocks_and_checkpoint_and_leaves_one_token():
    pool = BlockPool(8, 4)
    cache = PrefixCache(pool, num_checkpoints=2)
    tokens = list(range(14))
    blocks = pool.allocate(4)
    seq = _seq(tokens, blocks)
    cache.register_blocks(seq)
    assert len(seq.block_hashes) == 3
    assert cache.lookup(tokens + [99]) is None  # blocks but no checkpoint
    checkpoint = cache.new_checkpoint(seq, 8)
    assert checkpoint is not None and cache.new_checkpoint(seq, 8) is None
    hit = cache.lookup(tokens[:12] + [5, 6])
    assert hit is not None and hit.num_tokens == 8 and hit.block_ids == blocks[:2]
    assert cache.lookup(tokens[:8]) is None  # a hit must leave a token to compute
    assert cache.lookup([7] + tokens[1:]) is None  # different first block: different chain


def test_cached_blocks_are_evictable_and_forgotten_on_reuse():
    pool = BlockPool(3, 4)
    cache = PrefixCache(pool, num_checkpoints=1)
    tokens = list(range(9))
    blocks = pool.allocate(3)
    seq = _seq(tokens, blocks)
    cache.register_blocks(seq)
    cache.new_checkpoint(seq, 8)
    pool.release(blocks)
    assert pool.num_free == 3  # two cached-but-free blocks and one plain free block
    assert cache.lookup(tokens + [1]) is not None
    pool.allocate(3)  # reclaims the cached blocks: the index must forget them
    assert cache.lookup(tokens + [1]) is None


def test_repeated_prompt_hits_and_equals_uncached(tiny_checkpoint, reference_logprobs):
    engine = build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", max_model_len=512, max_num_seqs=4,
                                     max_num_batched_tokens=64, progress=False))
    prompt = torch.randint(0, 248000, (150,), generator=torch.Generator().manual_seed(5)).tolist()
    params = SamplingParams(max_tokens=5, temperature=0, logprobs=0, ignore_eos=True)

    def run(request_id: str, ids: list[int]):
        engine.add_request(request_id, ids, params)
        tokens, lps, cached = [], [], 0
        while engine.has_unfinished():
            for out in engine.step():
                cached = out.num_cached_tokens
                for d in out.sequences:
                    tokens += d.new_token_ids
                    lps += [lp[t] for t, lp in zip(d.new_token_ids, d.new_logprobs)]
        return tokens, lps, cached

    first = run("a", prompt)
    second = run("b", prompt)
    follow = run("c", prompt + first[0] + [11, 12, 13])  # the next turn extends the conversation
    assert first[2] == 0
    assert second[2] == 144 and follow[2] >= 144
    assert second[0] == first[0]
    for ids, (tokens, lps, _) in ((prompt, second), (prompt + first[0] + [11, 12, 13], follow)):
        want = reference_logprobs(ids + tokens)
        for j, (t, lp) in enumerate(zip(tokens, lps)):
            assert abs(lp - want[len(ids) - 1 + j, t].item()) < 1e-4
    assert engine.prefix_cache.stats()["hits"] == 2
    assert engine.blocks.num_free == engine.blocks.num_blocks and engine.slots.num_free == engine.slots.num_slots
