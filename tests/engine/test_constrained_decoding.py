"""Grammar-constrained decoding on the tiny random checkpoint: every sample follows its grammar for any weights.

The model is noise, so whatever it emits unconstrained is garbage: a valid JSON document or tool call can only come
from the mask. Covers n > 1 (one matcher per sample), thinking (the grammar waits for `</think>`), seeds, preemption
and the bitmask layout.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from qwen35.engine.args import EngineArgs
from qwen35.engine.build import build_engine
from qwen35.engine.penalties import unpack_bitmask
from qwen35.engine.request import FinishReason, SamplingParams, ThinkingBudget
from qwen35.processor import load_processor
from qwen35.processor.grammar import AnswerSpec, GrammarCompiler

SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["cat", "dog", "bird"]},
        "ok": {"type": "boolean"},
        "age": {"type": "integer", "minimum": 0, "maximum": 30},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        "owner": {"type": "object", "properties": {"vip": {"type": "boolean"}}, "required": ["vip"]},
    },
    "required": ["kind", "ok", "age", "tags", "owner"],
}


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", max_model_len=1024, max_num_seqs=8,
                                   max_num_batched_tokens=128, progress=False))


@pytest.fixture(scope="module")
def processor(tiny_checkpoint):
    return load_processor(tiny_checkpoint)


@pytest.fixture(scope="module")
def compiler(engine, processor):
    return GrammarCompiler(processor.tokenizer, engine.vocab_size, processor.tokenizer.stop_token_ids)


def generate(engine, prompt: list[int], params: SamplingParams) -> dict[int, dict]:
    engine.add_request("g", prompt, params)
    samples: dict[int, dict] = {}
    while engine.has_unfinished():
        for out in engine.step():
            for d in out.sequences:
                s = samples.setdefault(d.index, {"tokens": [], "finish": None})
                s["tokens"] += d.new_token_ids
                s["finish"] = d.finish_reason or s["finish"]
    return samples


def test_bitmask_layout_matches_xgrammar():
    import xgrammar

    bitmask = torch.randint(-(2**31), 2**31 - 1, (2, 5), dtype=torch.int32)
    logits = torch.zeros(2, 150)
    xgrammar.apply_token_bitmask_inplace(logits, bitmask)
    assert torch.equal(unpack_bitmask(bitmask, 150), logits == 0)


def test_json_schema_samples_always_valid(engine, processor, compiler):
    grammar = compiler.compile(AnswerSpec(json_schema=SCHEMA))
    prompt = processor.tokenizer.encode("Describe a pet as JSON:")
    params = SamplingParams(n=3, max_tokens=400, temperature=1.0, seed=7, grammar=grammar)
    samples = generate(engine, prompt, params)
    assert len(samples) == 3
    texts = []
    for s in samples.values():
        assert s["finish"] is FinishReason.STOP
        text = processor.tokenizer.decode(s["tokens"])
        jsonschema.validate(json.loads(text), SCHEMA)
        texts.append(text)
    assert len(set(texts)) > 1, "each sample has its own matcher and its own draws"
    assert engine.blocks.num_free == engine.blocks.num_blocks


def test_grammar_waits_for_think_end(engine, processor, compiler):
    tok = processor.tokenizer
    think_end = tok.special_ids.think_end
    grammar = compiler.compile(AnswerSpec(json_schema=SCHEMA, after_think=True))
    prompt = tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n")
    params = SamplingParams(max_tokens=600, temperature=1.0, seed=3, grammar=grammar,
                            thinking_budget=ThinkingBudget(20, think_end, ()))
    (sample,) = generate(engine, prompt, params).values()
    tokens = sample["tokens"]
    at = tokens.index(think_end)
    assert at == 20, "the thinking budget closed the block: reasoning was free, not masked"
    answer = tok.decode(tokens[at + 1:])
    assert answer.startswith("\n\n")
    jsonschema.validate(json.loads(answer), SCHEMA)


def test_tool_calls_required_and_seeded(engine, processor, compiler):
    tools = ({"name": "get_weather", "parameters": {"type": "object", "properties": {
        "unit": {"enum": ["c", "f"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["unit", "days"]}},)
    from qwen35.processor.grammar import ToolGrammar

    grammar = compiler.compile(AnswerSpec(tools=tuple(ToolGrammar(t["name"], t["parameters"]) for t in tools),
                                          calls_required=True, single_call=True))
    prompt = processor.tokenizer.encode("weather?")
    params = SamplingParams(max_tokens=300, temperature=1.0, seed=11, grammar=grammar)
    first = generate(engine, prompt, params)[0]
    again = generate(engine, prompt, params)[0]
    assert first == again, "seeded constrained sampling is reproducible"
    parser = processor.output_parser([{"type": "function", "function": t} for t in tools])
    text = processor.tokenizer.decode(first["tokens"])
    events = parser.feed(text) + parser.finish()
    calls = [e for e in events if type(e).__name__ == "ToolCallEnd"]
    assert len(calls) == 1 and calls[0].name == "get_weather", text
    jsonschema.validate(calls[0].arguments, tools[0]["parameters"])


def test_preempted_constrained_samples_equal_alone(tiny_checkpoint, processor):
    # 8 blocks of 16 tokens for three 40-token prompts: some are preempted and recomputed mid-answer, and the
    # matcher (kept with the sample's tokens) goes on where it was.
    block_bytes = 2 * 2 * 16 * 2 * 32 * 4  # k+v, 2 attention layers, 16 tokens, 2 kv heads, dim 32, fp32
    small = build_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", max_model_len=128, max_num_seqs=4,
                                    max_num_batched_tokens=32, kv_cache_gb=8 * block_bytes / 2**30,
                                    progress=False))
    compiler = GrammarCompiler(processor.tokenizer, small.vocab_size, processor.tokenizer.stop_token_ids)
    grammar = compiler.compile(AnswerSpec(json_schema=SCHEMA))
    prompts = {f"p{i}": processor.tokenizer.encode(f"pet number {i} " * 8)[:40] for i in range(3)}
    params = SamplingParams(max_tokens=60, temperature=1.0, seed=5, grammar=grammar)

    def run(ids_by_request):
        for request_id, ids in ids_by_request.items():
            small.add_request(request_id, ids, params)
        tokens: dict[str, list[int]] = {r: [] for r in ids_by_request}
        while small.has_unfinished():
            for out in small.step():
                for d in out.sequences:
                    tokens[out.request_id] += d.new_token_ids
        return tokens

    crowded = run(prompts)
    assert small.scheduler.num_preemptions > 0
    for request_id, ids in prompts.items():
        assert run({request_id: ids})[request_id] == crowded[request_id]
        matcher = grammar.matcher()
        assert matcher.accept_text(processor.tokenizer.decode(crowded[request_id]))
