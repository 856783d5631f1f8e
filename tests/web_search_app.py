"""The real engine on the tiny checkpoint behind the app, with the web search tool pointed at a local fake Linkup
(`fake_linkup`): what every web search end-to-end test runs against. The real service is never contacted."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_linkup import FAKE_KEY, FakeLinkup, fake_linkup
from scripted_app import serve


@dataclass
class SearchApp:
    base_url: str  # no /v1
    secret: str
    platform: Any
    fake: FakeLinkup
    core: Any
    log: list[str]  # every log line of the server while it ran (checked for the provider key)


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + (f" {record.exc_info[1]!r}" if record.exc_info else ""))


@contextlib.contextmanager
def running_search_app(checkpoint: Path, data_dir: Path, max_uses: int = 5) -> Iterator[SearchApp]:
    from qwen35.api.app import create_app
    from qwen35.api.settings import ServerSettings
    from qwen35.engine.args import EngineArgs
    from qwen35.engine.build import build_async_engine
    from qwen35.platform import Platform
    from qwen35.processor import load_processor
    from qwen35.serving.core import ServingCore
    from qwen35.serving.linkup import LinkupProvider
    from qwen35.serving.web_search import WebSearchService

    lines: list[str] = []
    handler = _Collect(lines)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    engine = build_async_engine(EngineArgs(model=str(checkpoint), dtype="float32", device="cpu", max_model_len=2048,
                                           max_num_seqs=4, progress=False))
    platform = Platform.open(data_dir=data_dir)
    _, secret = platform.create_key("e2e")
    try:
        with fake_linkup() as fake:
            provider = LinkupProvider(api_key=FAKE_KEY, base_url=fake.base_url, backoff_s=0.01, timeout_s=1.0)
            core = ServingCore(engine, load_processor(checkpoint),
                               web_search=WebSearchService(provider, max_uses=max_uses))
            app = create_app(core, platform, ServerSettings(max_model_len=core.max_model_len,
                                                            model_path=str(checkpoint)))
            with serve(app) as base_url:
                yield SearchApp(base_url, secret, platform, fake, core, lines)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        engine.shutdown()
        platform.close()
