"""Images and video through our engine equal transformers' Qwen3_5ForConditionalGeneration on the tiny checkpoint:
per-token logprobs of the prompt (media rows and the text after them) and of greedy decode tokens, chunked prefill
with a chunk boundary inside an image, the prefix cache keyed by pixels, and embeddings freed."""

from __future__ import annotations

import pytest
import torch

from media_cases import mp4, png, reference_logprobs
from qwen35.engine.args import EngineArgs
from qwen35.engine.build import build_engine
from qwen35.engine.request import SamplingParams
from qwen35.processor import load_processor
from qwen35.processor.media import expand_media


@pytest.fixture(scope="module")
def processor(tiny_checkpoint):
    return load_processor(tiny_checkpoint)


def build(tiny_checkpoint, batched: int = 64, checkpoints: int = 0):
    return build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", max_model_len=2048, max_num_seqs=4,
                                   max_num_batched_tokens=batched, prefix_checkpoints=checkpoints, progress=False))


def media_prompt(processor, content: list, images=(), videos=()):
    ids = processor.encode_chat([{"role": "user", "content": content}], enable_thinking=False)
    vision = processor.vision
    return expand_media(ids, [vision.image(b) for b in images], [vision.video(b) for b in videos],
                        processor.special_ids, processor.tokenizer)


def run(engine, request_id, ids, media, params):
    engine.add_request(request_id, ids, params, media)
    prompt_lps, tokens, lps = None, [], []
    while engine.has_unfinished():
        for out in engine.step():
            if out.prompt_logprobs is not None:
                prompt_lps = out.prompt_logprobs
            for d in out.sequences:
                tokens += d.new_token_ids
                lps += d.new_logprobs or []
    return prompt_lps, tokens, lps


CASES = {
    "one image": ([{"type": "image"}, {"type": "text", "text": "What is in the picture?"}], [(96, 64)], []),
    "two sizes": ([{"type": "text", "text": "Compare"}, {"type": "image"}, {"type": "text", "text": "and"},
                   {"type": "image"}, {"type": "text", "text": "please."}], [(64, 64), (160, 96)], []),
    "video": ([{"type": "video"}, {"type": "text", "text": "Describe the clip."}], [], [12]),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("batched", [64, 4096])  # 64: chunk boundaries inside the media runs
def test_prompt_and_decode_logprobs_equal_reference(tiny_checkpoint, reference_model, processor, case, batched):
    content, sizes, frames = CASES[case]
    ids, media = media_prompt(processor, content, [png(w, h, seed=i) for i, (w, h) in enumerate(sizes)],
                              [mp4(num_frames=n, width=96, height=96) for n in frames])
    assert media and sum(m.num_tokens for m in media) > 20
    engine = build(tiny_checkpoint, batched)
    params = SamplingParams(max_tokens=6, temperature=0, logprobs=0, prompt_logprobs=0, ignore_eos=True)
    prompt_lps, tokens, lps = run(engine, "r", ids, media, params)
    special = processor.special_ids
    ref = reference_logprobs(reference_model, ids + tokens, media, special.image_pad, special.video_pad)
    ours_prompt = torch.tensor([lp[t] for lp, t in zip(prompt_lps[1:], ids[1:])])
    ref_prompt = ref[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    assert (ours_prompt - ref_prompt).abs().max() < 1e-4
    ours_out = torch.tensor([lp[t] for lp, t in zip(lps, tokens)])
    ref_out = ref[torch.arange(len(ids) - 1, len(ids) + len(tokens) - 1), torch.tensor(tokens)]
    assert (ours_out - ref_out).abs().max() < 1e-4
    assert not engine.runner._media_embeds, "media embeddings are dropped once the prefill passed them"
    assert engine.blocks.num_free == engine.blocks.num_blocks


def test_prefix_cache_keys_include_pixels(tiny_checkpoint, processor):
    engine = build(tiny_checkpoint, batched=4096, checkpoints=4)
    content = [{"type": "image"}, {"type": "text", "text": "Describe it in detail, with every colour you see."}]
    greedy = SamplingParams(max_tokens=2, temperature=0, logprobs=0, ignore_eos=True)

    def cached(seed: int) -> tuple[int, list[float]]:
        ids, media = media_prompt(processor, content, [png(128, 96, seed=seed)])
        engine.add_request(f"r{seed}-{engine.prefix_cache.num_queries}", ids, greedy, media)
        num_cached, lps = 0, []
        while engine.has_unfinished():
            for out in engine.step():
                num_cached = max(num_cached, out.num_cached_tokens)
                lps += [lp for d in out.sequences for lp in (d.new_logprobs or [])]
        return num_cached, lps

    first, lps_first = cached(1)
    again, lps_again = cached(1)
    other, _ = cached(2)
    block = engine.config.block_size
    assert first == 0 and again >= block, "the same image hits the cache"
    assert other == 0, "another image with the same text never hits (the image is in the first block)"
    assert all(abs(a[t] - b[t]) < 1e-4 for a, b in zip(lps_first, lps_again) for t in a)


@pytest.mark.parametrize("quantization", ["int8", "int4"])
def test_media_runs_on_quantised_weights(tiny_checkpoint, processor, quantization):
    """The CPU default (int8 weights, no dense LM head to take a dtype from): media embeddings take the
    activations' dtype and the request decodes (it raised before)."""
    content, images, _ = CASES["one image"]
    ids, media = media_prompt(processor, content, [png(w, h, seed=i) for i, (w, h) in enumerate(images)])
    params = SamplingParams(max_tokens=3, temperature=0.0)
    engine = build_engine(EngineArgs(model=str(tiny_checkpoint), quantization=quantization, max_model_len=2048,
                                     max_num_seqs=4, progress=False))
    _, tokens, _ = run(engine, "q", ids, media, params)
    assert len(tokens) == 3
