"""Quantised weights on the tiny checkpoint: drift from float32 bounded per format, kernel == twin greedy, loading
keeps no dense copy, and the defaults (int8 on CPU unless a dtype is explicit)."""

from __future__ import annotations

import pytest
import torch
from test_model_reference import run_chunks
from torch import nn

from qwen35.engine.args import EngineArgs
from qwen35.engine.build import build_engine
from qwen35.engine.request import SamplingParams
from qwen35.engine.runner import resolve_quantization
from qwen35.model.kernels import quant
from qwen35.model.quantized import QuantEmbedding, QuantLinear
from qwen35.model.weights import build_model, load_config

# Measured on this checkpoint (2026-12-03): bf16 0.0032, int8 0.015, int4 0.16 max |delta logprob|.
DRIFT_BOUND = {"bf16": 0.01, "int8": 0.04, "int4": 0.4}
CHUNKS = [40] + [1] * 30  # prefill, then the recurrent decode path


@pytest.fixture(scope="module")
def prompt_ids() -> list[int]:
    return torch.randint(0, 248000, (70,), generator=torch.Generator().manual_seed(5)).tolist()


@pytest.mark.parametrize("fmt", ["bf16", "int8", "int4"])
def test_drift_from_float32_reference_is_bounded(tiny_checkpoint, reference_logprobs, prompt_ids, fmt):
    config = load_config(tiny_checkpoint)
    model = build_model(tiny_checkpoint, config, torch.float32, progress=False, quantization=fmt)
    got = run_chunks(model, config, prompt_ids, CHUNKS)
    want = reference_logprobs(prompt_ids)
    drift = (got - want).abs().max().item()
    agreement = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    print(f"{fmt}: max |delta logprob| {drift:.4f}, greedy agreement {agreement:.3f}")
    assert drift < DRIFT_BOUND[fmt]
    assert agreement >= 0.95


def test_quantised_model_holds_no_dense_linear(tiny_checkpoint):
    config = load_config(tiny_checkpoint)
    model = build_model(tiny_checkpoint, config, torch.float32, progress=False, quantization="int8")
    lm = model.language_model
    assert not any(isinstance(m, nn.Linear) for m in lm.modules())
    assert isinstance(lm.embed_tokens, QuantEmbedding)  # the tied table is stored once, quantised
    fused = [m for m in lm.modules() if isinstance(m, QuantLinear) and len(m.parts) > 1]
    assert len(fused) == 2 * config.text.num_hidden_layers  # q|k|v or GDN in-proj, and gate|up, per layer
    dense_bytes = sum(p.numel() * p.element_size() for p in lm.parameters())
    assert dense_bytes < 0.05 * config.text.vocab_size * config.text.hidden_size  # norms and conv weights only


def _greedy(engine, prompts: list[list[int]], max_tokens: int = 12) -> list[list[int]]:
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    for i, ids in enumerate(prompts):
        engine.add_request(str(i), ids, params)
    out: dict[str, list[int]] = {str(i): [] for i in range(len(prompts))}
    while engine.has_unfinished():
        for result in engine.step():
            for delta in result.sequences:
                out[result.request_id] += delta.new_token_ids
    return [out[str(i)] for i in range(len(prompts))]


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_kernel_and_twin_decode_the_same_greedy_tokens(tiny_checkpoint, monkeypatch, fmt):
    prompts = [torch.randint(0, 248000, (n,), generator=torch.Generator().manual_seed(n)).tolist()
               for n in (3, 17, 80)]  # 80 > PREFILL_ROWS: the dequantised-tile path too
    args = EngineArgs(model=str(tiny_checkpoint), quantization=fmt, max_model_len=256, max_num_seqs=4,
                      progress=False)
    with_kernel = _greedy(build_engine(args), prompts)
    monkeypatch.setattr(quant, "library", lambda: None)
    with_twin = _greedy(build_engine(args), prompts)
    assert with_kernel == with_twin


def test_batched_decode_equals_each_alone(tiny_checkpoint):
    prompts = [torch.randint(0, 248000, (n,), generator=torch.Generator().manual_seed(n)).tolist()
               for n in (5, 9, 30, 12)]
    args = EngineArgs(model=str(tiny_checkpoint), quantization="int8", max_model_len=256, max_num_seqs=4,
                      progress=False)
    engine = build_engine(args)
    together = _greedy(engine, prompts)
    alone = [_greedy(engine, [p])[0] for p in prompts]
    assert together == alone


def test_default_format():
    assert resolve_quantization(None, None, "cpu") == "int8"
    assert resolve_quantization(None, "float32", "cpu") == "none"  # an explicit dtype alone: the exact path
    assert resolve_quantization("int4", "float32", "cpu") == "int4"
    assert resolve_quantization(None, None, "cuda") == "none"


def test_unknown_quantization_is_refused(tiny_checkpoint):
    with pytest.raises(ValueError, match="unknown quantization"):
        build_model(tiny_checkpoint, load_config(tiny_checkpoint), torch.float32, quantization="int3")


def test_decode_steps_give_torch_one_thread_and_restore_it(tiny_checkpoint, monkeypatch):
    """With the compiled kernels' own pool doing the products, decode steps run torch on one thread (no OpenMP
    team competing for the cores); prefill steps and the caller between steps keep the caller's count."""
    from qwen35.model.kernels.build import library

    if library() is None or torch.get_num_threads() < 2:
        pytest.skip("needs the compiled kernels and two threads")
    args = EngineArgs(model=str(tiny_checkpoint), quantization="int8", max_model_len=256, max_num_seqs=4,
                      progress=False)
    engine = build_engine(args)
    caller = torch.get_num_threads()
    seen: list[tuple[bool, int]] = []  # (decode-only step, torch threads during its forward)
    forward = engine.runner.forward

    def spy(out):
        seen.append((all(item.num_new_tokens == 1 for item in out.scheduled), torch.get_num_threads()))
        return forward(out)

    monkeypatch.setattr(engine.runner, "forward", spy)
    _greedy(engine, [[1, 2, 3, 4, 5]], max_tokens=4)
    assert seen[0] == (False, caller) and {threads for decode, threads in seen[1:] if decode} == {1}
    assert torch.get_num_threads() == caller
