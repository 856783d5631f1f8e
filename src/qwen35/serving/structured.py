"""Structured-output policy: the grammar, if any, that a request's answer is held to.

Owns the one mapping from a request's response format, tools, tool choice and parallel-call setting onto the
processor's `AnswerSpec`, for every API alike:
- `required` / `named` tool choice: the answer is tool calls only (named: exactly one, of that tool; parallel
  calls off: exactly one), each call's arguments following its tool's schema;
- `auto` with tools: free text, and the grammar is used only where something is enforced: a `strict` tool's
  arguments, a single call when parallel calls are off, or a JSON response format (the answer is then JSON or
  calls);
- a JSON response format without tools (or with tool choice `none`): the answer is that JSON.
With thinking on, the grammar starts after `</think>` (the engine waits for it). Imports processor.grammar and
serving types only. Invariant: `answer_spec` returns None exactly when nothing is constrained (no grammar cost).
"""

from __future__ import annotations

from typing import Any

from qwen35.processor.grammar import AnswerSpec, ToolGrammar
from qwen35.serving.request import GenerationRequest, ToolSpec

JSON_OBJECT: dict[str, Any] = {"type": "object"}


def answer_spec(req: GenerationRequest, tools: tuple[ToolSpec, ...], thinking: bool) -> AnswerSpec | None:
    """The AnswerSpec of `req` given the tools offered to the model (after tool_choice), or None."""
    fmt = req.response_format
    schema: Any = None
    if fmt.type == "json_object":
        schema = JSON_OBJECT
    elif fmt.type == "json_schema":
        schema = True if fmt.schema is None else fmt.schema
    mode = req.tool_choice.mode
    required = bool(tools) and mode in ("required", "named")
    single = mode == "named" or not req.parallel_tool_calls
    calls: tuple[ToolGrammar, ...] = ()
    if required:
        calls = tuple(_tool_grammar(t, i, enforce=True) for i, t in enumerate(tools))
    elif tools and (schema is not None or not req.parallel_tool_calls or any(t.strict for t in tools)):
        calls = tuple(_tool_grammar(t, i, enforce=bool(t.strict)) for i, t in enumerate(tools))
    if schema is None and not calls:
        return None
    return AnswerSpec(json_schema=schema, json_param=fmt.param, tools=calls, calls_required=required,
                      single_call=single, after_think=thinking)


def _tool_grammar(tool: ToolSpec, index: int, enforce: bool) -> ToolGrammar:
    parameters: Any = tool.parameters if enforce and tool.parameters is not None else True
    return ToolGrammar(tool.name, parameters, param=f"tools[{index}]")
