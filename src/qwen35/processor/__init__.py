"""qwen35.processor: text in and out of the engine (tokenizer, chat template, detokenizer, stops, output parser).

Owns `Processor`, the bundle the serving layer and the offline API use, and `load_processor`. Must not import
torch, the model, the engine (except engine.request data types), serving or api; importing it stays cheap.
Key invariant: `encode_chat` gives the ids transformers would give for `apply_chat_template(tokenize=True)` with
the same checkpoint files.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen35.processor.chat_template import ChatTemplate, ChatTemplateError
from qwen35.processor.control_tokens import ControlTokenGuard
from qwen35.processor.detokenizer import IncrementalDetokenizer
from qwen35.processor.media import VisionProcessor
from qwen35.processor.output_parser import OutputParser, starts_in_reasoning
from qwen35.processor.stop import StopMatcher
from qwen35.processor.tokenizer import SpecialIds, Tokenizer, TokenizerError, load_tokenizer

# Forced when a thinking budget runs out, before the engine appends </think>: the model then answers from what it
# has thought so far instead of being cut mid-sentence (the phrasing Qwen's own budget recipe uses).
WIND_DOWN_TEXT = (
    "\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly now.\n"
)

__all__ = [
    "ChatTemplate",
    "ChatTemplateError",
    "IncrementalDetokenizer",
    "OutputParser",
    "Processor",
    "SpecialIds",
    "StopMatcher",
    "Tokenizer",
    "TokenizerError",
    "VisionProcessor",
    "WIND_DOWN_TEXT",
    "load_processor",
    "starts_in_reasoning",
]


@dataclass(frozen=True)
class Processor:
    """The checkpoint's tokenizer and chat template, with the helpers built on both."""

    tokenizer: Tokenizer
    template: ChatTemplate
    vision: VisionProcessor | None = None  # image / video preprocessing (the checkpoint's configs)
    split_control_tokens: bool = True  # client text never becomes a control token (False: trusted callers)

    @property
    def special_ids(self) -> SpecialIds:
        return self.tokenizer.special_ids

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        return self.tokenizer.stop_token_ids

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        enable_thinking: bool | None = True,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> str:
        """The prompt text (raises ChatTemplateError for input the template refuses)."""
        return self.template.render(
            messages,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            enable_thinking=enable_thinking,
            **template_kwargs,
        )

    def encode_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        enable_thinking: bool | None = True,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> list[int]:
        """Prompt token ids of a conversation. Control-token strings in the messages and tools are text (a user's
        `<|im_end|>` ends no turn); only the template's own markers become control tokens. With
        `split_control_tokens=False` (trusted callers) the whole rendered string is tokenized, as transformers does."""
        if not self.split_control_tokens:
            text = self.render_chat(messages, tools, enable_thinking, add_generation_prompt, **template_kwargs)
            return self.tokenizer.encode(text)
        guard = self._control_guard
        text = self.render_chat(guard.escape_messages(messages), guard.escape_tools(tools), enable_thinking,
                                add_generation_prompt, **template_kwargs)
        return guard.encode(text)

    @functools.cached_property
    def _control_guard(self) -> ControlTokenGuard:
        return ControlTokenGuard(self.tokenizer.added_tokens, self.tokenizer.encode_plain)

    def prompt_opens_reasoning(self, prompt_ids: Sequence[int]) -> bool:
        """True when the prompt ends inside an open think block (the generation starts as reasoning)."""
        ids = self.special_ids
        for token_id in reversed(prompt_ids):
            if token_id == ids.think_start:
                return True
            if token_id == ids.think_end or not self.tokenizer.decode([token_id]).isspace():
                return False
        return False

    def wind_down_ids(self) -> tuple[int, ...]:
        """Token ids of the graceful end-of-thinking sentence (the engine appends </think> after them)."""
        return _wind_down_ids(self.tokenizer)

    @property
    def control_tags(self) -> dict[int, str]:
        """Id -> tag of the tokens the output parser acts on by id (<think>, </think>, <tool_call>, </tool_call>)."""
        return self.special_ids.control_tags

    def detokenizer(self, skip_special_tokens: bool = True) -> IncrementalDetokenizer:
        """The detokenizer the output parser reads: the control tokens are kept whatever their special flag."""
        return IncrementalDetokenizer(
            self.tokenizer, skip_special_tokens=skip_special_tokens, keep_ids=self.control_tags
        )

    def output_parser(
        self, tools: Sequence[Mapping[str, Any]] | None = None, in_reasoning: bool = False
    ) -> OutputParser:
        return OutputParser(tools, in_reasoning=in_reasoning, control_ids=self.control_tags)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write tokenizer.json, tokenizer_config.json and chat_template.jinja (the official layout)."""
        written = self.tokenizer.save_pretrained(directory)
        template_file = Path(directory) / "chat_template.jinja"
        template_file.write_text(self.template.source, encoding="utf-8")
        return [*written, template_file]


@functools.lru_cache(maxsize=8)
def _wind_down_ids(tokenizer: Tokenizer) -> tuple[int, ...]:
    return tuple(tokenizer.encode(WIND_DOWN_TEXT))


def load_processor(model_dir: str | os.PathLike[str] | None = None) -> Processor:
    """Processor for a checkpoint directory (its tokenizer.json / chat template when present, else the built-ins).

    A hub id or a path that is not a directory gets the built-ins: Qwen3.5 checkpoints share one tokenizer.
    """
    directory = Path(model_dir) if model_dir is not None and Path(model_dir).is_dir() else None
    return Processor(tokenizer=load_tokenizer(directory), template=ChatTemplate.from_dir(directory),
                     vision=VisionProcessor.load(directory))
