"""Grammars for structured output: what each AnswerSpec accepts and refuses (as text through the real token
table), the JSON-schema support table, and that what the chat template writes for a call is what the grammar
accepts."""

from __future__ import annotations

import pytest

from qwen35.processor import Processor, load_processor
from qwen35.processor.grammar import AnswerSpec, GrammarCompiler, GrammarError, ToolGrammar, _strict
from qwen35.processor.json_schema_support import SchemaError, check_schema

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1,
                                                                               "maximum": 7}},
           "required": ["city", "days"]}
NO_ARGS = {"type": "object", "properties": {}}


@pytest.fixture(scope="module")
def processor() -> Processor:
    return load_processor(None)


@pytest.fixture(scope="module")
def compiler(processor: Processor) -> GrammarCompiler:
    return GrammarCompiler(processor.tokenizer, 248320, processor.tokenizer.stop_token_ids)


def accepts(compiler: GrammarCompiler, spec: AnswerSpec, text: str, complete: bool = True) -> bool:
    matcher = compiler.compile(spec).matcher()
    return matcher.accept_text(text) and (matcher.is_completed() or not complete)


def template_call(processor: Processor, name: str, arguments: dict) -> str:
    """What the chat template writes for an assistant turn holding one call (the answer part only)."""
    rendered = processor.render_chat(
        [{"role": "user", "content": "q"},
         {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": name, "arguments": arguments}}]}],
        add_generation_prompt=False, enable_thinking=False,
    )
    start = rendered.index("<tool_call>")
    return rendered[start: rendered.index("<|im_end|>", start)]


def test_template_calls_are_what_the_call_grammar_accepts(processor: Processor, compiler: GrammarCompiler) -> None:
    spec = AnswerSpec(tools=(ToolGrammar("get_weather", WEATHER), ToolGrammar("now", NO_ARGS)), calls_required=True)
    weather = template_call(processor, "get_weather", {"city": "Paris", "days": 3})
    now = template_call(processor, "now", {})
    assert accepts(compiler, spec, weather)
    assert accepts(compiler, spec, now)  # a call without arguments: `<function=now>\n</function>`
    assert accepts(compiler, spec, weather + "\n" + now)  # parallel calls, one newline apart
    assert not accepts(compiler, spec, weather.replace("get_weather", "get_wether"), complete=False)
    assert not accepts(compiler, spec, weather.replace(">\n3\n<", ">\nthree\n<"), complete=False)
    assert not accepts(compiler, spec, "Sure! " + weather, complete=False)  # calls only
    single = AnswerSpec(tools=spec.tools, calls_required=True, single_call=True)
    assert accepts(compiler, single, weather) and not accepts(compiler, single, weather + "\n" + now, complete=False)


def test_auto_with_strict_tools_allows_text_and_constrains_calls(processor: Processor,
                                                                 compiler: GrammarCompiler) -> None:
    spec = AnswerSpec(tools=(ToolGrammar("get_weather", WEATHER),))
    weather = template_call(processor, "get_weather", {"city": "Rome", "days": 2})
    assert accepts(compiler, spec, "Let me check.\n\n" + weather)
    assert accepts(compiler, spec, "No call needed.")
    assert not accepts(compiler, spec, "x <tool_call>\n<function=get_weather>\n<parameter=days>\n99", complete=False)


def test_json_after_think_starts_with_the_template_separator(compiler: GrammarCompiler) -> None:
    spec = AnswerSpec(json_schema={"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
                      after_think=True)
    assert accepts(compiler, spec, '\n\n{"a": true}')
    assert not accepts(compiler, spec, '{"a": true}', complete=False)


def test_json_or_calls(processor: Processor, compiler: GrammarCompiler) -> None:
    spec = AnswerSpec(json_schema={"type": "object"}, tools=(ToolGrammar("get_weather", WEATHER),))
    assert accepts(compiler, spec, '{"any": [1, {"x": null}]}')
    assert accepts(compiler, spec, template_call(processor, "get_weather", {"city": "Oslo", "days": 1}))
    assert not accepts(compiler, spec, "plain text", complete=False)


def test_objects_are_closed_unless_the_schema_needs_more() -> None:
    closed = _strict({"type": "object", "properties": {"type": {"type": "string"}, "properties": {"type": "object"}},
                      "$defs": {"d": {"type": "object", "properties": {"x": {"type": "integer"}}}}})
    assert closed["additionalProperties"] is False
    # property *names* that are keywords are not schemas: nothing is added to the properties map itself
    assert set(closed["properties"]) == {"type", "properties"}
    assert closed["properties"]["properties"]["additionalProperties"] is True  # a bare object: any members
    assert closed["$defs"]["d"]["additionalProperties"] is False
    assert _strict({"type": "object", "properties": {"a": {}}, "minProperties": 2})["additionalProperties"] is True
    assert _strict({"type": "array"})["items"] is True
    assert _strict({"type": "object", "additionalProperties": {"type": "integer"}})["additionalProperties"] == {
        "type": "integer"}


@pytest.mark.parametrize("schema,feature,pointer", [
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not", "/properties/a/not"),
    ({"if": {}, "then": {}}, "if", "/if"),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems", "/uniqueItems"),
    ({"allOf": [{"type": "object"}, {"required": ["a"]}]}, "allOf", "/allOf"),
    ({"type": "number", "multipleOf": 0.5}, "multipleOf", "/multipleOf"),
    ({"type": "integer", "multipleOf": 3, "maximum": 30}, "multipleOf", "/multipleOf"),
    ({"type": "string", "format": "idn-email"}, "format", "/format"),
    ({"$ref": "https://example.com/s.json"}, "$ref", "/$ref"),
    ({"anyOf": [{"type": "string"}, {"dependentRequired": {}}]}, "dependentRequired", "/anyOf/1/dependentRequired"),
    ({"type": "strng"}, "type", "/type"),
    ({"type": "object", "properties": {"a": 5}}, "schema", "/properties/a"),
])
def test_unenforceable_keywords_are_refused_by_name(schema: dict, feature: str, pointer: str) -> None:
    with pytest.raises(SchemaError) as refused:
        check_schema(schema)
    assert refused.value.feature == feature and refused.value.pointer == pointer
    assert feature in refused.value.message or feature == "schema"


def test_supported_schemas_pass(compiler: GrammarCompiler) -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "T", "description": "d",
        "type": "object", "x-extension": 1,
        "properties": {
            "when": {"type": "string", "format": "date-time"}, "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "n": {"type": ["integer", "null"], "exclusiveMinimum": 0}, "even": {"type": "integer", "multipleOf": 2},
            "kind": {"oneOf": [{"const": "a"}, {"const": "b"}], "discriminator": {"propertyName": "kind"}},
            "items": {"type": "array", "prefixItems": [{"type": "boolean"}], "minItems": 1, "maxItems": 3},
            "ref": {"$ref": "#/$defs/leaf"}, "one": {"allOf": [{"$ref": "#/$defs/leaf"}]},
        },
        "required": ["when", "code"], "$defs": {"leaf": {"enum": [1, 2, "x", None]}},
    }
    check_schema(schema)
    assert accepts(compiler, AnswerSpec(json_schema=schema), '{"when": "2026-12-02T10:00:00Z", "code": "ABC"}')
    # properties come in the declared order ("when" before "code", not sorted)
    assert not accepts(compiler, AnswerSpec(json_schema=schema), '{"code": "ABC"', complete=False)


def test_compile_errors_name_the_request_field(compiler: GrammarCompiler) -> None:
    with pytest.raises(GrammarError) as bad_format:
        compiler.compile(AnswerSpec(json_schema={"uniqueItems": True}, json_param="text.format.schema"))
    assert bad_format.value.param == "text.format.schema"
    with pytest.raises(GrammarError) as bad_tool:
        compiler.compile(AnswerSpec(tools=(ToolGrammar("f", {"not": {}}, param="tools[3]"),), calls_required=True))
    assert bad_tool.value.param == "tools[3]"
    with pytest.raises(GrammarError):  # xgrammar's own refusal (more required items than the tuple allows)
        compiler.compile(AnswerSpec(json_schema={"type": "array", "prefixItems": [{}], "items": False,
                                                 "minItems": 3}))


def test_a_compiled_grammar_pickles_as_its_key_and_recompiles_for_the_same_vocabulary(
        compiler: GrammarCompiler) -> None:
    """Engine replicas (qwen35.cluster) receive grammars pickled: the key travels, the receiving process's compiler
    for the same vocabulary compiles it again; a process without one refuses clearly."""
    import pickle

    from qwen35.processor import grammar

    spec = AnswerSpec(json_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    compiled = compiler.compile(spec)
    copy = pickle.loads(pickle.dumps(compiled))
    assert copy.key == compiled.key and copy.vocab == compiled.vocab
    matcher = copy.matcher()
    assert matcher.accept_text('{"n": 12}') and matcher.is_completed()
    assert not copy.matcher().accept_text('{"m"')
    saved = dict(grammar._COMPILERS)
    grammar._COMPILERS.clear()
    try:
        with pytest.raises(RuntimeError, match="without a GrammarCompiler"):
            pickle.loads(pickle.dumps(compiled))
    finally:
        grammar._COMPILERS.update(saved)
