"""load_processor / Processor helpers, and that importing the processor stays cheap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from processor_cases import rendered_examples

from qwen35.processor import WIND_DOWN_TEXT, Processor, load_processor


def test_encode_chat_matches_reference_ids(processor: Processor) -> None:
    for case in rendered_examples():
        if case["template"] != "4b":
            continue
        inputs = case["inputs"]
        kwargs = dict(inputs["template_kwargs"])
        kwargs.setdefault("enable_thinking", None)
        assert processor.encode_chat(inputs["messages"], tools=inputs["tools"], **kwargs) == case["ids"]


def test_prompt_opens_reasoning(processor: Processor) -> None:
    messages = [{"role": "user", "content": "hi"}]
    assert processor.prompt_opens_reasoning(processor.encode_chat(messages, enable_thinking=True))
    assert not processor.prompt_opens_reasoning(processor.encode_chat(messages, enable_thinking=False))


def test_wind_down_ids(processor: Processor) -> None:
    ids = processor.wind_down_ids()
    assert ids and processor.tokenizer.decode(list(ids)) == WIND_DOWN_TEXT
    assert processor.special_ids.think_end not in ids and processor.wind_down_ids() is ids
    assert processor.stop_token_ids == (248046, 248044)


def test_save_and_load_checkpoint_dir(processor: Processor, saved_checkpoint: Path) -> None:
    names = {p.name for p in saved_checkpoint.iterdir()}
    assert names == {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}
    loaded = load_processor(saved_checkpoint)
    messages = [{"role": "user", "content": "héllo 🙂"}]
    assert loaded.encode_chat(messages) == processor.encode_chat(messages)
    assert loaded.template.source == processor.template.source
    assert load_processor("Qwen/Qwen3.5-4B").tokenizer is processor.tokenizer  # hub id: the built-ins


def test_helpers_build_working_pipeline(processor: Processor) -> None:
    ids = processor.tokenizer.encode("thought\n</think>\n\nanswer")
    detok = processor.detokenizer()
    parser = processor.output_parser(in_reasoning=True)
    events = parser.feed(detok.add(ids)) + parser.finish()
    assert [type(e).__name__ for e in events] == ["ReasoningText", "AnswerText"]


def test_encode_chat_takes_openai_json_string_arguments(processor: Processor) -> None:
    # what the OpenAI SDK sends back in history: arguments as a JSON string (the template iterates a mapping)
    def history(arguments: object) -> list[dict[str, object]]:
        call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
        return [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]

    as_string = history('{"city": "Paris", "days": 3}')
    assert processor.encode_chat(as_string) == processor.encode_chat(history({"city": "Paris", "days": 3}))
    rendered = processor.render_chat(as_string)
    assert "<parameter=city>\nParis\n</parameter>" in rendered and "<parameter=days>\n3\n</parameter>" in rendered
    with pytest.raises(ValueError, match=r"messages\[1\]\.tool_calls\[0\]\.function\.arguments is not valid JSON"):
        processor.encode_chat(history('{"city": '))


def test_import_is_cheap() -> None:
    code = "import sys, qwen35.processor; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
