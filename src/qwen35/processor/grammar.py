"""Structured-output grammars: JSON answers and Qwen3.5 XML tool calls compiled with xgrammar for the engine.

Owns the xgrammar binding: the token table built once from the tokenizer (raw bytes per id; control tokens other
than `<tool_call>` / `</tool_call>` / `<think>` / `</think>` and the embedding's padding rows can never be
generated under a grammar), the compiler and its bounded cache, and the objects the engine drives through its
`Grammar` / `GrammarMatcher` protocols (engine.request). Must not import torch, engine internals, serving or api.

An `AnswerSpec` describes what the answer may be; the grammar matches the answer only (the engine starts it after
`</think>`; `after_think` adds the template's blank line that follows the think block):
- JSON only (`json_schema`, no tools): one JSON value of that schema;
- calls only (`tools`, `calls_required`): one or more (`single_call`: exactly one) tool calls in the chat
  template's XML, arguments following each tool's schema (`ToolGrammar.parameters`, True = any arguments);
- free text with calls (`tools`, not required): text, and any call that opens follows its tool's format;
- JSON or calls (`json_schema` and `tools`): the answer is one JSON value of the schema, or calls only.
Invariant: object properties are generated in the order the schema declares them (xgrammar's default, kept by
never re-sorting a schema); the cache key is the structural tag's JSON in that order.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qwen35.processor.json_schema_support import SUBSCHEMA_LISTS, SUBSCHEMA_MAPS, SUBSCHEMAS, SchemaError, check_schema
from qwen35.processor.tokenizer import Tokenizer

if TYPE_CHECKING:
    import xgrammar

CALL_BEGIN = "<tool_call>\n<function={name}>\n"
CALL_END = "\n</function>\n</tool_call>"
EMPTY_CALL_END = "</function>\n</tool_call>"  # a call without parameters: the template's `<function=f>\n</function>`
CALL_SEPARATOR = "\n"  # between parallel calls, as the template writes them
THINK_SEPARATOR = "\n\n"  # the template's blank line after `</think>`
KEPT_CONTROL = ("<tool_call>", "</tool_call>", "<think>", "</think>")  # control tokens grammars may spell with
CACHE_LIMIT_BYTES = 512 << 20  # compiled grammars kept by xgrammar (LRU by size)
MAX_WHITESPACE = 16  # longest run of whitespace inside JSON (indentation fits; random weights still terminate)
# Inside a call: the template writes one newline around each value and between parameters, and nested JSON values
# with `tojson` (", " and ": "): one whitespace character is all the format ever has.
MAX_CALL_WHITESPACE = 1


class GrammarError(ValueError):
    """A response format or tool schema that cannot be compiled; `param` says which part of the request."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class ToolGrammar:
    """A callable tool: its name and the JSON schema its arguments follow (True: any arguments)."""

    name: str
    parameters: Mapping[str, Any] | bool = True
    param: str = "tools"  # where the request declared it (for errors)


@dataclass(frozen=True)
class AnswerSpec:
    """What the answer may be (see the module docstring for the four shapes)."""

    json_schema: Mapping[str, Any] | bool | None = None
    json_param: str = "response_format"
    tools: tuple[ToolGrammar, ...] = ()
    calls_required: bool = False
    single_call: bool = False
    after_think: bool = False


class CompiledAnswer:
    """An engine `Grammar`: compiled once, one matcher per sample.

    Pickles as its key (xgrammar's compiled grammars do not pickle): unpickled in another process (an engine
    replica), it is compiled again by that process's `GrammarCompiler` for the same vocabulary (`_recompile`)."""

    def __init__(self, compiled: xgrammar.CompiledGrammar, key: str, vocab: tuple[int, tuple[int, ...]]) -> None:
        self._compiled = compiled
        self.key = key
        self.vocab = vocab

    def __reduce__(self) -> tuple[Any, tuple[str, tuple[int, tuple[int, ...]]]]:
        return _recompile, (self.key, self.vocab)

    def matcher(self) -> AnswerMatcher:
        import xgrammar

        return AnswerMatcher(xgrammar.GrammarMatcher(self._compiled))


class AnswerMatcher:
    """An engine `GrammarMatcher` over an xgrammar matcher."""

    def __init__(self, matcher: xgrammar.GrammarMatcher) -> None:
        self._matcher = matcher

    def fill_bitmask(self, bitmask: object, index: int) -> None:
        self._matcher.fill_next_token_bitmask(bitmask, index)  # type: ignore[arg-type]

    def accept(self, token_id: int) -> bool:
        return bool(self._matcher.accept_token(token_id))

    def is_terminated(self) -> bool:
        return bool(self._matcher.is_terminated())

    def accept_text(self, text: str) -> bool:
        """Advance with text (tests and tools: what the grammar would accept as tokens)."""
        return bool(self._matcher.accept_string(text))

    def is_completed(self) -> bool:
        return bool(self._matcher.is_completed())


class GrammarCompiler:
    """Compiles AnswerSpecs for one tokenizer and model vocabulary (thread-safe; the token table is built on the
    first compile, once)."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int, stop_token_ids: Sequence[int], max_threads: int = 2):
        self.tokenizer = tokenizer
        self.vocab_size = max(int(vocab_size), tokenizer.vocab_size)
        self.stop_token_ids = tuple(int(t) for t in stop_token_ids)
        self.max_threads = max_threads
        self._lock = threading.Lock()
        self._compiler: xgrammar.GrammarCompiler | None = None
        _COMPILERS.setdefault(self.vocab, self)  # the one that unpickles grammars made elsewhere for this vocabulary

    @property
    def vocab(self) -> tuple[int, tuple[int, ...]]:
        """What a compiled grammar depends on beyond its key (same checkpoint: same token table)."""
        return self.vocab_size, self.stop_token_ids

    def compile(self, spec: AnswerSpec) -> CompiledAnswer:
        """The grammar of `spec`; raises GrammarError (naming the request field) for what cannot be enforced."""
        tag = self._structural_tag(spec)
        # never sort keys: properties are generated in their declared order (the caller's, pydantic's field order)
        key = json.dumps(tag.model_dump(mode="json"), separators=(",", ":"))
        try:
            compiled = self._xgrammar_compiler().compile_structural_tag(key)
        except (RuntimeError, ValueError) as exc:  # xgrammar refuses what it cannot express
            raise GrammarError(f"The schema cannot be compiled into a grammar: {_first_line(exc)}",
                               spec.json_param if spec.json_schema is not None else "tools") from exc
        return CompiledAnswer(compiled, key, self.vocab)

    def compile_key(self, key: str) -> CompiledAnswer:
        """Compile a structural tag key made by `compile` (here or in another process)."""
        return CompiledAnswer(self._xgrammar_compiler().compile_structural_tag(key), key, self.vocab)

    def warm(self) -> None:
        """Build the token table and compiler now (server start), so the first constrained request does not."""
        self._xgrammar_compiler()

    def _xgrammar_compiler(self) -> xgrammar.GrammarCompiler:
        with self._lock:
            if self._compiler is None:
                import xgrammar

                info = xgrammar.TokenizerInfo(
                    list(_token_table(self.tokenizer)), xgrammar.VocabType.RAW, vocab_size=self.vocab_size,
                    stop_token_ids=list(self.stop_token_ids),
                )
                self._compiler = xgrammar.GrammarCompiler(
                    info, max_threads=self.max_threads, cache_enabled=True, cache_limit_bytes=CACHE_LIMIT_BYTES
                )
            return self._compiler

    def _structural_tag(self, spec: AnswerSpec) -> xgrammar.StructuralTag:
        from xgrammar import StructuralTag
        from xgrammar import structural_tag as st

        answer: Any
        json_format = None
        if spec.json_schema is not None:
            _check(spec.json_schema, spec.json_param)
            json_format = st.JSONSchemaFormat(json_schema=_strict(spec.json_schema), max_whitespace_cnt=MAX_WHITESPACE)
        tags = [self._call_tag(tool) for tool in spec.tools]
        if tags and (spec.calls_required or json_format is not None):
            calls = st.TagsWithSeparatorFormat(tags=tags, separator=CALL_SEPARATOR, at_least_one=True,
                                               stop_after_first=spec.single_call)
            answer = calls if json_format is None or spec.calls_required else st.OrFormat(elements=[json_format,
                                                                                                   calls])
        elif tags:
            answer = st.TriggeredTagsFormat(triggers=["<tool_call>"], tags=tags, stop_after_first=spec.single_call,
                                            excludes=["<think>", "</think>"])
        elif json_format is not None:
            answer = json_format
        else:
            answer = st.AnyTextFormat(excludes=["<think>", "</think>"])
        if spec.after_think:
            answer = st.SequenceFormat(elements=[st.ConstStringFormat(value=THINK_SEPARATOR), answer])
        return StructuralTag(format=answer)

    @staticmethod
    def _call_tag(tool: ToolGrammar) -> Any:
        from xgrammar import structural_tag as st

        begin = CALL_BEGIN.format(name=tool.name)
        if tool.parameters is not True:
            _check(tool.parameters, tool.param)
        if _takes_no_arguments(tool.parameters):
            return st.TagFormat(begin=begin, content=st.ConstStringFormat(value=""), end=EMPTY_CALL_END)
        content = st.JSONSchemaFormat(json_schema=_strict(tool.parameters), style="qwen_xml",
                                     max_whitespace_cnt=MAX_CALL_WHITESPACE)
        return st.TagFormat(begin=begin, content=content, end=CALL_END)


_COMPILERS: dict[tuple[int, tuple[int, ...]], GrammarCompiler] = {}


def _recompile(key: str, vocab: tuple[int, tuple[int, ...]]) -> CompiledAnswer:
    compiler = _COMPILERS.get(vocab)
    if compiler is None:
        raise RuntimeError("a grammar arrived in a process without a GrammarCompiler for its vocabulary")
    return compiler.compile_key(key)


def _check(schema: Mapping[str, Any] | bool, param: str) -> None:
    try:
        check_schema(schema)
    except SchemaError as exc:
        raise GrammarError(exc.message, param) from exc


def _strict(schema: Mapping[str, Any] | bool) -> dict[str, Any] | bool:
    """Objects and arrays without a word on extra members get none (xgrammar's strict mode, as OpenAI's strict
    schemas require), unless the schema needs them (minProperties / minItems past what it declares)."""
    if isinstance(schema, bool):
        return schema
    closed: dict[str, Any] = _close(schema)
    return closed


def _close(node: Any) -> Any:
    """A copy of the schema `node` with extra members closed (recursing through subschema positions only)."""
    if not isinstance(node, Mapping):
        return node
    out = dict(node)
    for key in SUBSCHEMA_MAPS:
        if isinstance(out.get(key), Mapping):
            out[key] = {name: _close(child) for name, child in out[key].items()}
    for key in SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_close(child) for child in out[key]]
    for key in SUBSCHEMAS:
        if key in out:
            out[key] = [_close(c) for c in out[key]] if isinstance(out[key], list) else _close(out[key])
    types = out.get("type")
    types = types if isinstance(types, list) else [types]
    if ("object" in types or "properties" in out) and not any(
        k in out for k in ("additionalProperties", "patternProperties", "unevaluatedProperties")
    ):
        declared = len(out.get("properties") or {})
        out["additionalProperties"] = "properties" not in out or int(out.get("minProperties", 0)) > declared
    if "array" in types and "items" not in out and "unevaluatedItems" not in out:
        declared = len(out.get("prefixItems") or [])
        out["items"] = not declared or int(out.get("minItems", 0)) > declared
    return out


def _takes_no_arguments(schema: Mapping[str, Any] | bool) -> bool:
    if not isinstance(schema, Mapping):
        return False
    return (schema.get("type") == "object" and not schema.get("properties") and "properties" in schema
            and schema.get("additionalProperties", False) is False and not schema.get("patternProperties"))


@functools.lru_cache(maxsize=4)
def _token_table(tokenizer: Tokenizer) -> tuple[bytes, ...]:
    """Raw bytes per token id; added tokens other than the kept control tags map to b"" (xgrammar treats an
    empty token as special: never allowed inside a grammar)."""
    kept = {tokenizer.token_to_id(tag) for tag in KEPT_CONTROL}
    added = tokenizer.added_token_ids
    return tuple(b"" if i in added and i not in kept else tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # xgrammar prefixes its messages with "[time] /path/file.cc:line: "
    return text.split(": ", 1)[1] if text.startswith("[") and ": " in text else text
