"""CUDA checks (skipped without a GPU): the engine on cuda matches the CPU reference; bf16 stays close."""

from __future__ import annotations

import pytest
import torch

from qwen35.engine.args import EngineArgs
from qwen35.engine.build import build_engine
from qwen35.engine.request import SamplingParams

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("dtype,tol", [("float32", 2e-3), ("bfloat16", 0.15)])
def test_cuda_greedy_logprobs_close_to_reference(tiny_checkpoint, reference_logprobs, dtype, tol):
    engine = build_engine(EngineArgs(model=str(tiny_checkpoint), device="cuda", dtype=dtype, max_model_len=512,
                                     progress=False))
    ids = torch.randint(0, 248000, (150,), generator=torch.Generator().manual_seed(0)).tolist()
    engine.add_request("g", ids, SamplingParams(max_tokens=8, temperature=0, logprobs=0, ignore_eos=True))
    engine.add_request("h", ids[:9], SamplingParams(max_tokens=8, temperature=0, logprobs=0, ignore_eos=True))
    tokens: dict[str, list[tuple[int, float]]] = {"g": [], "h": []}
    while engine.has_unfinished():
        for out in engine.step():
            for d in out.sequences:
                tokens[out.request_id] += [(t, lp[t]) for t, lp in zip(d.new_token_ids, d.new_logprobs)]
    for rid, prompt in (("g", ids), ("h", ids[:9])):
        got = tokens[rid]
        want = reference_logprobs(prompt + [t for t, _ in got])
        for j, (t, lp) in enumerate(got):
            assert abs(lp - want[len(prompt) - 1 + j, t].item()) < tol
    assert engine.blocks.num_free == engine.blocks.num_blocks
