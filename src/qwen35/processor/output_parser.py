"""Streaming parser of generated tokens into reasoning, answer text and Qwen XML tool calls.

Owns the event types below and the state machine that produces them from (token id, text) pairs (`feed_token`,
the text being the detokenizer's delta) or from text alone (`feed`). The control tokens `<think>`, `</think>`,
`<tool_call>`, `</tool_call>` are recognised by id (`control_ids`, looked up once from the tokenizer), whatever
the checkpoint's special flags and whether the detokenizer skipped them, and also when a model spells them out
in ordinary sub-word tokens. Must not import torch, engine, serving or api (serving maps these events to its own).
Key invariants: the events do not depend on how the text was chunked (after merging adjacent text pieces), nor on
whether a tag came as its control id or as text; with a think block open (thinking on, or opened by the model)
the first `</think>` ends reasoning and `</think>` never reaches answer text, while with thinking off (the prompt
closed the block) a `</think>` is answer text verbatim; a `<tool_call>` (or, with tools, a bare `<function=`)
that does not open a well-formed call is released as text after a bounded hold-back; for every call, the
ToolCallArgs deltas concatenate to `arguments_json`, which is `json.dumps(arguments)`.

Format (see the chat template): reasoning, `</think>`, blank line, answer; tool calls are
`<tool_call>\\n<function=NAME>\\n<parameter=KEY>\\nVALUE\\n</parameter>\\n...</function>\\n</tool_call>`;
Qwen3.5 sometimes omits the `<tool_call>` opener (and closer): with tools given, `<function=NAME>` opens a call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from qwen35.processor.tool_args import convert_value, tool_param_types

THINK_START, THINK_END = "<think>", "</think>"
CALL_START, CALL_END = "<tool_call>", "</tool_call>"
FUNCTION_END, PARAM_END = "</function>", "</parameter>"
_FUNCTION_OPEN = "<function="
_PARAM_OPEN = "<parameter="
MAX_NAME_CHARS = 256  # longest function / parameter name waited for before the tag is judged literal text
MAX_LEADING_WS = 64  # whitespace allowed between <tool_call> and <function=...>
_FUNCTION_RE = re.compile(r"\s{0,%d}<function=([^<>\n]{1,%d})>" % (MAX_LEADING_WS, MAX_NAME_CHARS))
_PARAM_RE = re.compile(r"<parameter=([^<>\n]{1,%d})>" % MAX_NAME_CHARS)


@dataclass(frozen=True)
class ReasoningText:
    text: str


@dataclass(frozen=True)
class AnswerText:
    text: str


@dataclass(frozen=True)
class ToolCallBegin:
    call_index: int
    name: str


@dataclass(frozen=True)
class ToolCallArgs:
    call_index: int
    delta: str  # a piece of the arguments JSON object text


@dataclass(frozen=True)
class ToolCallEnd:
    call_index: int
    name: str
    arguments: dict[str, Any] = field(hash=False)
    arguments_json: str


ParsedEvent = Union[ReasoningText, AnswerText, ToolCallBegin, ToolCallArgs, ToolCallEnd]

_REASONING, _CONTENT, _TOOL_PRE, _TOOL_BODY, _PARAM, _TOOL_POST = range(6)


def _find_first(buf: str, tags: Sequence[str], start: int = 0) -> tuple[int, str | None]:
    best, best_tag = -1, None
    for tag in tags:
        at = buf.find(tag, start)
        if at != -1 and (best == -1 or at < best):
            best, best_tag = at, tag
    return best, best_tag


def _partial_tag_start(buf: str, tags: Sequence[str]) -> int:
    """Index where a suffix of `buf` that is a proper prefix of some tag starts; len(buf) if none."""
    longest = max(len(t) for t in tags)
    for start in range(max(0, len(buf) - longest + 1), len(buf)):
        tail = buf[start:]
        if any(len(t) > len(tail) and t.startswith(tail) for t in tags):
            return start
    return len(buf)


def starts_in_reasoning(prompt: str) -> bool:
    """True when a rendered prompt leaves a think block open (thinking on), so generation starts as reasoning."""
    head = prompt.rstrip()
    return head.endswith(THINK_START)


def _json_str_body(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


class OutputParser:
    """Feed generated tokens (or text), get events. `in_reasoning`: the prompt opened a think block (thinking on).
    `control_ids`: token id -> tag for the control tokens (`SpecialIds.control_tags`)."""

    def __init__(
        self,
        tools: Sequence[Mapping[str, Any]] | None = None,
        in_reasoning: bool = False,
        control_ids: Mapping[int, str] | None = None,
    ) -> None:
        self._types = tool_param_types(tools)
        self._tools_enabled = bool(tools)
        self._control = dict(control_ids or {})
        self._state = _REASONING if in_reasoning else _CONTENT
        self._buf = ""
        self._events: list[ParsedEvent] = []
        self._reasoning_started = False  # leading newlines of reasoning dropped
        self._content_started = False  # leading newlines of the answer dropped / <think> opener checked
        self._saw_reasoning = in_reasoning
        self._after_think_end = False  # content that follows a </think> drops its leading "\n\n" separator
        self._content_after_think = False  # the answer began after a </think> (its separator was dropped)
        self._after_tool = False  # whitespace between and after tool calls is formatting
        self._pending_ws = ""  # whitespace dropped before a <tool_call>, restored if the tag is literal
        self._bare_call = False  # _TOOL_PRE was entered on a <function= without <tool_call> (buffer starts with it)
        self._literal_opener = False  # a <tool_call> was just released as text: its <function= is text too
        self.num_tool_calls = 0
        self._call_name = ""
        self._call_args: dict[str, Any] = {}
        self._call_json: list[str] = []
        self._param_key = ""
        self._param_types: tuple[str, ...] = ()
        self._param_stream = False  # string parameter streamed as it arrives
        self._param_skip = False  # duplicate key: consumed, not recorded
        self._param_value_started = False
        self._param_parts: list[str] = []
        self._scan_from = 0  # PARAM: where to resume searching for a terminator

    @property
    def in_reasoning(self) -> bool:
        """True while text is being classified as reasoning."""
        return self._state == _REASONING

    @property
    def in_tool_call(self) -> bool:
        return self._state in (_TOOL_BODY, _PARAM, _TOOL_POST)

    def feed_token(self, token_id: int, text: str) -> list[ParsedEvent]:
        """One generated token and the text the detokenizer gave for it. A control token counts as its tag by id:
        a detokenizer that skipped it (flagged special) gave "", and the tag is supplied here."""
        tag = self._control.get(token_id)
        if tag is not None and not text.endswith(tag):
            text += tag
        return self.feed(text)

    def feed(self, text: str) -> list[ParsedEvent]:
        """Generated text (tags spelled out in it are recognised as such)."""
        if text:
            self._buf += text
            self._run(final=False)
        return self._drain()

    def finish(self) -> list[ParsedEvent]:
        """End of generation: release held text and close an unterminated tool call."""
        self._run(final=True)
        buf, self._buf = self._buf, ""
        if self._state == _REASONING:
            self._emit_reasoning(buf)
        elif self._state == _CONTENT:
            self._emit_answer(buf)
        elif self._state == _PARAM:
            self._end_param(buf)
            self._end_call()
        elif self._state == _TOOL_BODY:
            self._end_call()
        self._state = _CONTENT
        return self._drain()

    # ------------------------------------------------------------------------------------------- emission

    def _drain(self) -> list[ParsedEvent]:
        events, self._events = self._events, []
        return events

    @property
    def drops_separator(self) -> bool:
        """True when the answer follows (or will follow) a </think>: its leading newlines are formatting, not
        content. Without a </think> in the output (thinking off), leading newlines are the model's content."""
        return self._after_think_end or self._content_after_think

    def _emit_reasoning(self, text: str) -> None:
        if text:
            last = self._events[-1] if self._events else None
            if isinstance(last, ReasoningText):
                self._events[-1] = ReasoningText(last.text + text)
            else:
                self._events.append(ReasoningText(text))

    def _emit_answer(self, text: str) -> None:
        if self._after_tool:
            text = text.lstrip()
            if not text:
                return
            self._after_tool = False
        if text:
            last = self._events[-1] if self._events else None
            if isinstance(last, AnswerText):
                self._events[-1] = AnswerText(last.text + text)
            else:
                self._events.append(AnswerText(text))

    def _emit_args(self, delta: str) -> None:
        self._call_json.append(delta)
        index = self.num_tool_calls - 1
        last = self._events[-1] if self._events else None
        if isinstance(last, ToolCallArgs) and last.call_index == index:
            self._events[-1] = ToolCallArgs(index, last.delta + delta)
        else:
            self._events.append(ToolCallArgs(index, delta))

    # ---------------------------------------------------------------------------------------- state machine

    def _run(self, final: bool) -> None:
        step = {
            _REASONING: self._step_reasoning,
            _CONTENT: self._step_content,
            _TOOL_PRE: self._step_tool_pre,
            _TOOL_BODY: self._step_tool_body,
            _PARAM: self._step_param,
            _TOOL_POST: self._step_tool_post,
        }
        while step[self._state](final):
            pass

    def _step_reasoning(self, final: bool) -> bool:
        buf = self._buf
        if not self._reasoning_started:
            buf = buf.lstrip("\n")  # the template puts the newline after <think> in the prompt
            if not buf:
                self._buf = ""
                return False
            self._reasoning_started = True
        at = buf.find(THINK_END)
        if at != -1:
            self._emit_reasoning(buf[:at].rstrip("\n"))
            self._buf = buf[at + len(THINK_END) :]
            self._state, self._content_started, self._after_think_end = _CONTENT, False, True
            return True
        # Hold a possible partial </think> and trailing newlines (the template's "\n" before </think>).
        cut = len(buf[: _partial_tag_start(buf, (THINK_END,))].rstrip("\n"))
        self._emit_reasoning(buf[:cut])
        self._buf = buf[cut:]
        return False

    def _step_content(self, final: bool) -> bool:
        buf = self._buf
        if not self._content_started:
            if self._after_think_end:  # the "</think>\n\n" formatting; without a </think>, newlines are content
                buf = buf.lstrip("\n")
            if not buf:
                self._buf = ""
                return False
            if not self._saw_reasoning:
                # Thinking was off, yet the model opened a think block itself: classify it as reasoning.
                if THINK_START.startswith(buf) and len(buf) < len(THINK_START) and not final:
                    self._buf = buf
                    return False
                if buf.startswith(THINK_START):
                    self._buf = buf[len(THINK_START) :]
                    self._state, self._saw_reasoning = _REASONING, True
                    return True
            self._content_after_think = self._content_after_think or self._after_think_end
            self._content_started, self._after_think_end = True, False
        tags = self._content_tags()
        at, tag = _find_first(buf, tags)
        if tag is not None:
            before = buf[:at]
            if tag == _FUNCTION_OPEN and self._literal_opener and not before.strip():
                # the <function= right after a <tool_call> already judged literal belongs to that literal text
                self._literal_opener = False
                self._emit_answer(buf[: at + len(tag)])
                self._buf = buf[at + len(tag) :]
                return True
            self._literal_opener = False
            kept = before.rstrip()
            self._emit_answer(kept)
            if tag in (CALL_START, _FUNCTION_OPEN):
                self._pending_ws = before[len(kept) :]
                self._bare_call = tag == _FUNCTION_OPEN
                # a bare <function= stays in the buffer: _TOOL_PRE matches it as if <tool_call> had preceded it
                self._buf = buf[at:] if self._bare_call else buf[at + len(tag) :]
                self._state = _TOOL_PRE
            else:  # a </think> after the open think block closed is dropped with the formatting around it
                self._buf = buf[at + len(tag) :]
                self._content_started, self._after_think_end = False, True
            return True
        # Hold a possible partial tag and trailing whitespace (dropped if a tag follows, else released later).
        cut = len(buf[: _partial_tag_start(buf, tags)].rstrip()) if tags else len(buf)
        if buf[:cut].strip():
            self._literal_opener = False
        self._emit_answer(buf[:cut])
        self._buf = buf[cut:]
        return False

    def _content_tags(self) -> tuple[str, ...]:
        tags = (CALL_START, _FUNCTION_OPEN) if self._tools_enabled else ()
        # Only a think block that was open (thinking on, or opened by the model) makes a later </think> formatting
        # to drop; with thinking off the prompt closed it, and a </think> the model writes is its answer text.
        return (*tags, THINK_END) if self._saw_reasoning else tags

    def _step_tool_pre(self, final: bool) -> bool:
        buf = self._buf
        match = _FUNCTION_RE.match(buf)
        # a call of a function that is not among the tools is never a tool call: it stays answer text
        if match and match.group(1).strip() in self._types:
            self._begin_call(match.group(1).strip())
            self._buf = buf[match.end() :]
            return True
        if not match and not final and self._could_open_function(buf):
            return False
        # Not a tool call after all: the tag and what followed are answer text.
        self._state = _CONTENT
        if self._bare_call:
            self._emit_answer(self._pending_ws + _FUNCTION_OPEN)
            self._buf = buf[len(_FUNCTION_OPEN) :]
        else:
            self._emit_answer(self._pending_ws + CALL_START)
            self._literal_opener = True
        self._pending_ws, self._bare_call = "", False
        return True

    @staticmethod
    def _could_open_function(buf: str) -> bool:
        rest = buf.lstrip()
        if len(buf) - len(rest) > MAX_LEADING_WS:
            return False
        if len(rest) <= len(_FUNCTION_OPEN):
            return _FUNCTION_OPEN.startswith(rest)
        name = rest[len(_FUNCTION_OPEN) :]
        return (
            rest.startswith(_FUNCTION_OPEN)
            and len(name) <= MAX_NAME_CHARS
            and not any(c in name for c in "<>\n")
        )

    def _step_tool_body(self, final: bool) -> bool:
        buf = self._buf.lstrip()
        self._buf = buf
        if not buf:
            return False
        match = _PARAM_RE.match(buf)
        if match:
            self._begin_param(match.group(1).strip())
            self._buf = buf[match.end() :]
            return True
        for closing in (FUNCTION_END, CALL_END, CALL_START):
            if buf.startswith(closing):
                self._end_call()
                if closing == FUNCTION_END:
                    self._buf, self._state = buf[len(closing) :], _TOOL_POST
                else:  # </function> missing: the call ends here; a new <tool_call> is left for _CONTENT
                    self._buf = buf[len(closing) :] if closing == CALL_END else buf
                    self._enter_after_tool()
                return True
        if not final and self._could_be_body_tag(buf):
            return False
        # Stray text between parameters carries nothing we can use: skip to the next tag.
        nxt = buf.find("<", 1)
        self._buf = buf[nxt:] if nxt != -1 else ""
        return bool(self._buf)

    @staticmethod
    def _could_be_body_tag(buf: str) -> bool:
        if any(len(buf) < len(t) and t.startswith(buf) for t in (FUNCTION_END, CALL_END, CALL_START, _PARAM_OPEN)):
            return True
        name = buf[len(_PARAM_OPEN) :]
        return buf.startswith(_PARAM_OPEN) and len(name) <= MAX_NAME_CHARS and not any(c in name for c in "<>\n")

    def _step_param(self, final: bool) -> bool:
        buf = self._buf
        if not self._param_value_started:
            if not buf:
                return False
            if buf[0] == "\n":  # the template's newline after <parameter=K>
                buf = self._buf = buf[1:]
            self._param_value_started = True
            self._scan_from = 0
        terms = (PARAM_END, FUNCTION_END, CALL_END)
        at, term = _find_first(buf, terms, self._scan_from)
        if term is not None:
            self._end_param(buf[:at])
            # A missing </parameter> is tolerated: </function> or </tool_call> also ends the value.
            self._buf = buf[at + len(PARAM_END) :] if term == PARAM_END else buf[at:]
            self._state = _TOOL_BODY
            return True
        if self._param_stream:
            cut = _partial_tag_start(buf, terms)
            if cut > 0 and buf[cut - 1] == "\n":  # maybe the template's newline before </parameter>
                cut -= 1
            if cut:
                self._param_parts.append(buf[:cut])
                self._emit_args(_json_str_body(buf[:cut]))
                self._buf = buf[cut:]
        else:
            self._scan_from = max(0, len(buf) - max(len(t) for t in terms) + 1)
        return False

    def _step_tool_post(self, final: bool) -> bool:
        buf = self._buf.lstrip()
        self._buf = buf
        if not buf:
            return False
        if buf.startswith(CALL_END):
            self._buf = buf[len(CALL_END) :]
        elif not final and CALL_END.startswith(buf):
            return False
        self._enter_after_tool()  # a missing </tool_call> is tolerated
        return True

    # ----------------------------------------------------------------------------------------- tool calls

    def _enter_after_tool(self) -> None:
        self._state, self._after_tool, self._content_started = _CONTENT, True, True

    def _begin_call(self, name: str) -> None:
        self.num_tool_calls += 1
        self._pending_ws = ""
        self._call_name, self._call_args, self._call_json = name, {}, []
        self._state = _TOOL_BODY
        self._events.append(ToolCallBegin(self.num_tool_calls - 1, name))
        self._emit_args("{")

    def _begin_param(self, key: str) -> None:
        self._param_key = key
        self._param_skip = key in self._call_args
        self._param_types = self._types.get(self._call_name, {}).get(key, ())
        self._param_stream = self._param_types == ("string",) and not self._param_skip
        self._param_value_started, self._param_parts, self._scan_from = False, [], 0
        self._state = _PARAM
        if self._param_stream:
            self._call_args[key] = ""  # reserve the key so its position matches the streamed JSON
            self._emit_args(self._separator() + json.dumps(key, ensure_ascii=False) + ': "')

    def _separator(self) -> str:
        return ", " if len(self._call_json) > 1 else ""

    def _end_param(self, tail: str) -> None:
        if self._param_skip:
            return
        raw = "".join(self._param_parts) + tail
        if raw.endswith("\n"):  # the template's newline before </parameter>
            raw, tail = raw[:-1], tail[:-1] if tail.endswith("\n") else tail
        key = self._param_key
        if self._param_stream:
            self._call_args[key] = raw
            self._emit_args(_json_str_body(tail) + '"')
            return
        value = convert_value(raw, self._param_types)
        self._call_args[key] = value
        self._emit_args(
            self._separator() + json.dumps(key, ensure_ascii=False) + ": " + json.dumps(value, ensure_ascii=False)
        )

    def _end_call(self) -> None:
        self._emit_args("}")
        self._events.append(
            ToolCallEnd(self.num_tool_calls - 1, self._call_name, dict(self._call_args), "".join(self._call_json))
        )
        self._call_args, self._call_json = {}, []
