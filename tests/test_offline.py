"""The offline API (`from qwen35 import LLM, SamplingParams`) through the tokenizer, against the reference."""

from __future__ import annotations

import pytest

from qwen35 import LLM, SamplingParams


@pytest.fixture(scope="module")
def llm(tiny_checkpoint):
    return LLM(model=str(tiny_checkpoint), dtype="float32", max_model_len=256, progress=False)


def test_generate_strings_and_ids_equal_reference(llm, reference_logprobs):
    params = SamplingParams(max_tokens=6, temperature=0, logprobs=2, prompt_logprobs=1, ignore_eos=True)
    outs = llm.generate(["The capital of France is", [101, 2000, 3000]], params)
    assert len(outs) == 2
    for out in outs:
        comp = out.outputs[0]
        assert len(comp.token_ids) == 6 and comp.finish_reason == "length"
        want = reference_logprobs(out.prompt_token_ids + comp.token_ids)
        n = len(out.prompt_token_ids)
        assert comp.token_ids == want[n - 1 : -1].argmax(-1).tolist()
        for j, t in enumerate(comp.token_ids):
            assert abs(comp.logprobs[j][t] - want[n - 1 + j, t].item()) < 1e-4
        assert out.prompt_logprobs[0] is None and len(out.prompt_logprobs) == n
        assert comp.text == llm.get_tokenizer().decode(comp.token_ids, skip_special_tokens=True)
    assert outs[0].prompt_token_ids == llm.get_tokenizer().encode("The capital of France is")


def test_stop_string_truncates_one_sample(llm):
    base = llm.generate("Hello", SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))[0].outputs[0]
    assert len(base.text) > 3
    stop = base.text[2:4]
    out = llm.generate("Hello", SamplingParams(max_tokens=12, temperature=0, ignore_eos=True, stop=[stop]))
    comp = out[0].outputs[0]
    assert comp.finish_reason == "stop" and comp.stop_reason == stop
    assert stop not in comp.text and base.text.startswith(comp.text)


def test_chat_and_n(llm):
    outs = llm.chat([{"role": "user", "content": "hi"}], SamplingParams(n=2, max_tokens=4, temperature=1.0, seed=3))
    assert [o.index for o in outs[0].outputs] == [0, 1]
    rendered = llm.processor.template.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert outs[0].prompt_token_ids == llm.get_tokenizer().encode(rendered)
