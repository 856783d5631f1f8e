"""Chat template rendering, byte-identical to transformers 5.23 `apply_chat_template(tokenize=False)`.

Owns the jinja environment (same options, filters and globals as transformers' chat_template_utils), the input
clean-up transformers applies (None-valued keys dropped, plain JSON data only, reasoning field aliases), and the
one addition the wire formats need: tool-call arguments given as a JSON string are parsed into a mapping first.
Must not import torch, transformers, serving or api. Key invariant: for the same messages, tools and kwargs the
rendered string equals transformers' output for the same template.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

DEFAULT_TEMPLATE_RESOURCE = ("qwen35", "assets/qwen3.5-4b/chat_template.jinja")
# transformers passes the tokenizer's special_tokens_map to every template; these are Qwen3.5's.
DEFAULT_SPECIAL_TOKENS: Mapping[str, str] = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


class ChatTemplateError(ValueError):
    """The conversation cannot be rendered (the template refused it, or the input is malformed)."""


class _GenerationTag(jinja2.ext.Extension):
    """Accept `{% generation %}...{% endgeneration %}` (assistant-mask markup) and render its body unchanged."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Callable[[], str]) -> str:
        return caller()


class _TemplateNamespace(jinja2.utils.Namespace):
    """transformers' namespace: refuses underscore-prefixed attributes (sandbox hardening)."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - same signature trick as jinja's Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: object) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"templates cannot set underscore attributes ({name!r})")


class _TemplateDict:
    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
) -> str:
    # Not jinja's tojson: that one HTML-escapes, which would change the prompt.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"chat template does not compile: {exc}") from exc


def _plain(value: Any) -> Any:
    """Rebuild `value` from plain JSON types, as transformers does before a template may see it."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


def _parse_tool_arguments(messages: list[dict[str, Any]]) -> None:
    """Turn JSON-string `function.arguments` (OpenAI wire form) into mappings; the template iterates `|items`."""
    for m_index, message in enumerate(messages):
        calls = message.get("tool_calls")
        if not isinstance(calls, list):
            continue
        new_calls = []
        for c_index, call in enumerate(calls):
            if not isinstance(call, dict):
                new_calls.append(call)
                continue
            call = dict(call)
            holder = call
            if isinstance(call.get("function"), dict):
                holder = call["function"] = dict(call["function"])
            args = holder.get("arguments")
            if isinstance(args, str):
                where = f"messages[{m_index}].tool_calls[{c_index}].function.arguments"
                try:
                    parsed = json.loads(args) if args.strip() else {}
                except ValueError as exc:
                    raise ChatTemplateError(f"{where} is not valid JSON: {exc}") from exc
                if not isinstance(parsed, dict):
                    raise ChatTemplateError(f"{where} must be a JSON object, got {type(parsed).__name__}")
                holder["arguments"] = parsed
            new_calls.append(call)
        message["tool_calls"] = new_calls


def _alias_reasoning(message: dict[str, Any]) -> dict[str, Any]:
    reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
    if reasoning is None:
        return message
    return {"thinking": reasoning, **message, "reasoning_content": reasoning}


class ChatTemplate:
    """A compiled chat template plus the special-token variables transformers exposes to it."""

    def __init__(self, source: str, special_tokens: Mapping[str, str] | None = None) -> None:
        if not isinstance(source, str) or not source:
            raise ChatTemplateError("chat template source must be a non-empty string")
        self.source = source
        self.special_tokens: dict[str, str] = dict(DEFAULT_SPECIAL_TOKENS if special_tokens is None else special_tokens)
        self._template = _compile(source)

    @classmethod
    def default(cls) -> ChatTemplate:
        """The official Qwen3.5-4B template shipped inside the package."""
        return cls(_default_source())

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike[str] | None) -> ChatTemplate:
        """The checkpoint's chat_template.jinja, else tokenizer_config.json's chat_template, else the default."""
        if model_dir is None:
            return cls.default()
        directory = Path(model_dir)
        jinja_file = directory / "chat_template.jinja"
        if jinja_file.is_file():
            return cls(jinja_file.read_text(encoding="utf-8"))
        config_file = directory / "tokenizer_config.json"
        if config_file.is_file():
            try:
                config = json.loads(config_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ChatTemplateError(f"cannot read {config_file}: {exc}") from exc
            source = _template_from_config(config.get("chat_template"))
            if source:
                return cls(source)
        return cls.default()

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = True,
        continue_final_message: bool = False,
        **template_kwargs: Any,
    ) -> str:
        """The prompt text. `enable_thinking=None` leaves the variable undefined (the template's own default)."""
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
            raise ChatTemplateError("messages must be a non-empty list of message objects")
        if continue_final_message and add_generation_prompt:
            raise ChatTemplateError("continue_final_message and add_generation_prompt are exclusive")
        chat: list[dict[str, Any]] = []
        for index, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise ChatTemplateError(f"messages[{index}] must be an object, got {type(message).__name__}")
            # transformers drops None values first: templates handle a missing key but not a None one.
            chat.append({k: v for k, v in message.items() if v is not None})
        _parse_tool_arguments(chat)
        chat = [_alias_reasoning(m) for m in _plain(chat)]
        tool_schemas = None
        if tools is not None:
            if any(not isinstance(t, Mapping) for t in tools):
                raise ChatTemplateError("each tool must be a JSON schema object")
            tool_schemas = _plain(list(tools))
        kwargs = dict(template_kwargs)
        if enable_thinking is not None:
            kwargs["enable_thinking"] = enable_thinking
        variables = {**self.special_tokens, **_plain(kwargs)}
        final_text = self._tag_final_message(chat) if continue_final_message else None
        try:
            rendered = self._template.render(
                messages=chat,
                tools=tool_schemas,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **variables,
            )
        except jinja2.exceptions.TemplateError as exc:
            raise ChatTemplateError(str(exc) or type(exc).__name__) from exc
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise ChatTemplateError(f"chat template failed on this input: {exc}") from exc
        if final_text is not None:
            rendered = self._cut_at_tag(rendered, final_text)
        return rendered

    def _tag_final_message(self, chat: list[dict[str, Any]]) -> str:
        """Mark the end of the final message so the rendered prompt can be cut there (assistant prefill)."""
        final = chat[-1]
        content = final.get("content")
        if isinstance(content, str):
            final["content"] = content + _CONTINUE_TAG
            return content
        if isinstance(content, list):
            for part in reversed(content):
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    part["text"] = text + _CONTINUE_TAG
                    return text
        raise ChatTemplateError("continue_final_message: the final message has no text to continue")

    @staticmethod
    def _cut_at_tag(rendered: str, final_text: str) -> str:
        tag = _CONTINUE_TAG.strip()
        if final_text.strip() not in rendered or tag not in rendered:
            raise ChatTemplateError("continue_final_message: the template dropped the final message")
        at = rendered.rindex(tag)
        if rendered[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
            return rendered[:at]
        return rendered[:at].rstrip()


def _template_from_config(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # [{"name": ..., "template": ...}]: transformers picks "default"
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        chosen = named.get("default")
        return chosen if isinstance(chosen, str) else None
    return None


@functools.cache
def _default_source() -> str:
    package, name = DEFAULT_TEMPLATE_RESOURCE
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")
