"""Real clients, unchanged, against structured output on the real engine (tiny random checkpoint): LangChain's
`bind_tools(tool_choice=NAME)` and `with_structured_output(Model)`, and openai-agents' `Agent(output_type=Model)`
over the Responses model. The model is noise: a parsed object or a named call can only come from the grammar."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from structured_cases import WEATHER, SimplePet

from scripted_app import RealApp, running_real_app

MODEL = "qwen3-5-4b"
NO_THINKING = {"enable_thinking": False}


@pytest.fixture(scope="module")
def app(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealApp]:
    with running_real_app(tiny_checkpoint, tmp_path_factory.mktemp("clients")) as running:
        yield running


def _chat_model(app: RealApp):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=MODEL, base_url=f"{app.base_url}/v1", api_key=app.secret, temperature=1.0, seed=4,
                      max_retries=0, max_completion_tokens=300, extra_body=NO_THINKING)


def test_langchain_bind_tools_with_a_named_choice(app: RealApp) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather forecast",
                                               "parameters": WEATHER}},
             {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
                                                                                  "properties": {}}}}]
    message = _chat_model(app).bind_tools(tools, tool_choice="get_weather").invoke("Weather in Paris?")
    assert [call["name"] for call in message.tool_calls] == ["get_weather"]
    jsonschema.validate(message.tool_calls[0]["args"], WEATHER)


def test_langchain_with_structured_output(app: RealApp) -> None:
    pet = _chat_model(app).with_structured_output(SimplePet).invoke("Describe a pet.")
    assert isinstance(pet, SimplePet)


def test_openai_agents_output_type_over_responses(app: RealApp) -> None:
    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # no trace export: tests talk to loopback only
    client = AsyncOpenAI(base_url=f"{app.base_url}/v1", api_key=app.secret, max_retries=0)
    agent = Agent(
        name="pets", instructions="Describe a pet.", output_type=SimplePet,
        model=OpenAIResponsesModel(model=MODEL, openai_client=client),
        model_settings=ModelSettings(temperature=1.0, max_tokens=300, extra_body={**NO_THINKING, "seed": 6}),
    )
    result = Runner.run_sync(agent, "A pet, please.")
    assert isinstance(result.final_output, SimplePet)
