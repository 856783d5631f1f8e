"""bfloat16 runs end to end on CPU and stays close to the float32 reference."""

from __future__ import annotations

import torch

from qwen35.engine.args import EngineArgs
from qwen35.engine.build import build_engine
from qwen35.engine.request import SamplingParams


def test_bfloat16_engine_close_to_reference(tiny_checkpoint, reference_logprobs):
    engine = build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="bfloat16", max_model_len=256,
                                     progress=False))
    ids = torch.randint(0, 248000, (70,), generator=torch.Generator().manual_seed(3)).tolist()
    engine.add_request("b", ids, SamplingParams(max_tokens=4, temperature=0, logprobs=0, ignore_eos=True))
    got = []
    while engine.has_unfinished():
        for out in engine.step():
            for d in out.sequences:
                got += [(t, lp[t]) for t, lp in zip(d.new_token_ids, d.new_logprobs)]
    want = reference_logprobs(ids + [t for t, _ in got])
    assert len(got) == 4
    for j, (t, lp) in enumerate(got):
        assert abs(lp - want[len(ids) - 1 + j, t].item()) < 0.15
