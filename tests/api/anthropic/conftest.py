"""Fixtures: the real app on uvicorn (127.0.0.1) over a scripted engine, and anthropic SDK clients."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from scripted_app import AppHarness, running_app


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    with running_app(tmp_path_factory.mktemp("anthropic-app")) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset_engine(harness: AppHarness) -> None:
    harness.reset()


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def client(request: pytest.FixtureRequest, harness: AppHarness) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=harness.base_url, api_key=harness.secret, max_retries=0, _strict_response_validation=request.param
    )
