"""Our model equals transformers' Qwen3_5ForConditionalGeneration on a tiny checkpoint (float32, 1e-4)."""

from __future__ import annotations

import pytest
import torch

from qwen35.model.batch import ForwardBatch, ModelCache
from qwen35.model.weights import build_model, load_config

BLOCK = 16


@pytest.fixture(scope="module")
def ours(tiny_checkpoint):
    config = load_config(tiny_checkpoint)
    model = build_model(tiny_checkpoint, config, torch.float32, progress=False)
    return model, config


def run_chunks(model, config, ids: list[int], chunks: list[int]) -> torch.Tensor:
    """Feed `ids` in the given chunk sizes through a fresh cache; return log-softmax for every position."""
    cache = ModelCache(config.text, num_blocks=64, block_size=BLOCK, num_state_slots=2, dtype=torch.float32)
    blocks = list(range(63, 63 - (len(ids) // BLOCK + 1), -1))  # non-contiguous order on purpose
    outs, done = [], 0
    for n in chunks:
        pos = torch.arange(done, done + n)
        batch = ForwardBatch(
            input_ids=torch.tensor(ids[done : done + n]), positions=pos[None].expand(3, -1), query_lens=[n],
            context_lens=[done + n], block_tables=[blocks], state_slots=[1],
            slot_mapping=torch.tensor([blocks[p // BLOCK] * BLOCK + p % BLOCK for p in pos.tolist()]),
        )
        outs.append(model(batch, cache, torch.arange(n)))
        done += n
    return torch.log_softmax(torch.cat(outs), dim=-1)


@pytest.mark.parametrize(
    "length,chunks",
    [
        (7, [7]),  # short prompt in one piece
        (300, [300]),  # spans five 64-token GDN chunks
        (300, [100, 77, 123]),  # chunked prefill with ragged boundaries
        (90, [40] + [1] * 50),  # prefill then token-by-token (recurrent path)
        (20, [1] * 20),  # token by token from the first token
    ],
)
def test_logprobs_match_reference(ours, reference_logprobs, length, chunks):
    model, config = ours
    ids = torch.randint(0, 248000, (length,), generator=torch.Generator().manual_seed(length)).tolist()
    got = run_chunks(model, config, ids, chunks)
    want = reference_logprobs(ids)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < 1e-4
