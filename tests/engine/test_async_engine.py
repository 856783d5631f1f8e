"""AsyncEngine: streams outputs to asyncio, errors at once, aborts when the consumer stops listening."""

from __future__ import annotations

import asyncio

import pytest

from qwen35.engine.args import EngineArgs
from qwen35.engine.build import build_async_engine
from qwen35.engine.request import EngineError, SamplingParams


@pytest.fixture(scope="module")
def aengine(tiny_checkpoint):
    engine = build_async_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", max_model_len=256, max_num_seqs=4,
                                           progress=False))
    yield engine
    engine.shutdown()


async def collect(aengine, request_id, ids, params):
    tokens = []
    async for out in aengine.generate(request_id, ids, params):
        for d in out.sequences:
            tokens += d.new_token_ids
    return tokens, out.finished


def test_concurrent_streams(aengine):
    async def main():
        p = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
        return await asyncio.gather(*(collect(aengine, f"c{i}", [1 + i, 2, 3], p) for i in range(3)))

    results = asyncio.run(main())
    assert all(len(tokens) == 6 and finished for tokens, finished in results)


def test_bad_input_raises_before_streaming(aengine):
    async def main():
        with pytest.raises(EngineError):
            await collect(aengine, "bad", [], SamplingParams())

    asyncio.run(main())


def test_closing_the_stream_aborts_and_frees(aengine):
    async def main():
        gen = aengine.generate("early", [5, 6, 7], SamplingParams(max_tokens=200, temperature=0, ignore_eos=True))
        await gen.__anext__()
        await gen.aclose()
        for _ in range(100):
            if not aengine.engine.requests:
                break
            await asyncio.sleep(0.02)

    asyncio.run(main())
    engine = aengine.engine
    assert not engine.requests
    assert engine.blocks.num_free == engine.blocks.num_blocks and engine.slots.num_free == engine.slots.num_slots


def test_finish_sample_stops_one_of_n(aengine):
    async def main():
        seen: dict[int, int] = {}
        stopped = False
        async for out in aengine.generate("fs", [9, 9], SamplingParams(n=2, max_tokens=12, temperature=1.0, seed=1,
                                                                        ignore_eos=True)):
            for d in out.sequences:
                seen[d.index] = d.num_output_tokens
            if not stopped and seen.get(0, 0) >= 2:
                aengine.finish_sample("fs", 0)
                stopped = True
        return seen, out.finished

    seen, finished = asyncio.run(main())
    assert finished and seen[1] == 12 and seen[0] < 12
