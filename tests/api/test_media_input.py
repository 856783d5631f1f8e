"""Image and video input end to end: the unchanged SDKs send media (data URLs, base64, URLs on 127.0.0.1) on chat,
messages and responses to the real engine on the tiny checkpoint; media tokens are counted in usage and
count_tokens; bad media are 400s in each family's format and the server keeps serving; URL fetching refuses
private targets (decided on resolved addresses) and is bounded."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from media_cases import mp4, png
from qwen35.processor import load_processor
from qwen35.processor.media import MediaLimits
from qwen35.processor.media_errors import MediaError
from qwen35.serving.media import MediaResolver
from qwen35.serving.media_fetch import FetchPolicy, fetch, is_allowed_address
from scripted_app import running_real_app

MODEL = "qwen3-5-4b"
NO_THINK: dict[str, Any] = {"enable_thinking": False}
IMAGE = png(96, 64, seed=3)  # smart-resized up to the 65,536-pixel minimum: 320 x 224, 10 x 7 merged tokens
IMAGE_URL = "data:image/png;base64," + base64.b64encode(IMAGE).decode()
VIDEO_URL = "data:video/mp4;base64," + base64.b64encode(mp4(num_frames=8, width=64, height=64)).decode()


@dataclass
class Clients:
    openai: openai.OpenAI
    anthropic: anthropic.Anthropic
    base_url: str
    secret: str


class _Files(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        status, headers, body = self.routes.get(self.path, (404, {}, b"missing"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Files.routes = {
        "/cat.png": (200, {"Content-Type": "image/png"}, IMAGE),
        "/moved": (302, {"Location": "/cat.png"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/big.png": (200, {"Content-Type": "image/png"}, IMAGE + b"\0" * 300_000),
    }
    yield base
    server.shutdown()


def _clients(app: Any) -> Clients:
    return Clients(
        openai.OpenAI(base_url=f"{app.base_url}/v1", api_key=app.secret, max_retries=0,
                      _strict_response_validation=True),
        anthropic.Anthropic(base_url=app.base_url, api_key=app.secret, max_retries=0),
        app.base_url, app.secret,
    )


@pytest.fixture(scope="module")
def real(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    with running_real_app(tiny_checkpoint, tmp_path_factory.mktemp("media")) as app:
        yield _clients(app)


@pytest.fixture(scope="module")
def trusting(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    """A server whose operator allows loopback media URLs and keeps small limits."""
    vision = load_processor(tiny_checkpoint).vision
    assert vision is not None
    limits = MediaLimits(max_image_bytes=200_000, max_video_frames=4, max_video_seconds=1.0)
    media = MediaResolver(vision.with_limits(limits), FetchPolicy(allow_private=True, timeout_s=5))
    with running_real_app(tiny_checkpoint, tmp_path_factory.mktemp("media-trusting"), media=media) as app:
        yield _clients(app)


def chat_image(client: openai.OpenAI, url: str, **kwargs: Any) -> Any:
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url, **kwargs}}]
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                          max_tokens=4, extra_body=NO_THINK)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_image_counts_media_tokens(real: Clients, stream: bool) -> None:
    text_only = real.openai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [{"type": "text", "text": "What is this?"}]}],
        max_tokens=4, extra_body=NO_THINK)
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": IMAGE_URL}}]
    if stream:
        chunks = list(real.openai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=4, extra_body=NO_THINK,
            stream=True, stream_options={"include_usage": True}))
        usage = chunks[-1].usage
    else:
        usage = real.openai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=4, extra_body=NO_THINK).usage
    assert usage is not None and text_only.usage is not None
    # + <|vision_start|> + 70 image pads + <|vision_end|>
    assert usage.prompt_tokens == text_only.usage.prompt_tokens + 72


def test_chat_low_detail_and_video(real: Clients) -> None:
    assert chat_image(real.openai, IMAGE_URL, detail="low").choices[0].finish_reason in ("length", "stop")
    content = [{"type": "video_url", "video_url": {"url": VIDEO_URL, "fps": 2}}, {"type": "text", "text": "Clip?"}]
    out = real.openai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                              max_tokens=4, extra_body=NO_THINK)
    # 8 frames at 4 fps -> 4 sampled at 2 fps -> 2 temporal groups of 2 x 2 merged tokens, each with a timestamp
    assert out.usage is not None and out.usage.prompt_tokens > 20


def test_anthropic_base64_image_and_count_tokens(real: Clients) -> None:
    messages = [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": base64.b64encode(IMAGE).decode()}},
        {"type": "text", "text": "Describe it."}]}]
    counted = real.anthropic.messages.count_tokens(model=MODEL, messages=messages, thinking={"type": "disabled"})
    message = real.anthropic.messages.create(model=MODEL, max_tokens=4, messages=messages,
                                             thinking={"type": "disabled"})
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == counted.input_tokens
    assert counted.input_tokens > 8
    with real.anthropic.messages.stream(model=MODEL, max_tokens=4, messages=messages,
                                        thinking={"type": "disabled"}) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens >= 1


def test_responses_input_image(real: Clients) -> None:
    response = real.openai.responses.create(
        model=MODEL, max_output_tokens=16, reasoning={"effort": "none"},
        input=[{"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                            {"type": "input_image", "image_url": IMAGE_URL, "detail": "auto"}]}])
    assert response.status in ("completed", "incomplete") and response.usage is not None
    assert response.usage.input_tokens > 8


BAD = {
    "corrupt": "data:image/png;base64," + base64.b64encode(IMAGE[:40]).decode(),
    "not an image": "data:image/png;base64," + base64.b64encode(b"hello, world, this is text").decode(),
    "bad base64": "data:image/png;base64,@@@",
    "loopback url": "http://127.0.0.1:9/cat.png",
    "ftp url": "ftp://example.invalid/cat.png",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_media_is_a_400_on_every_api(real: Clients, case: str) -> None:
    url = BAD[case]
    with pytest.raises(openai.BadRequestError) as chat:
        chat_image(real.openai, url)
    assert chat.value.body["param"].startswith("messages[0].content[1]")  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        real.openai.responses.create(model=MODEL, max_output_tokens=16, input=[
            {"role": "user", "content": [{"type": "input_image", "image_url": url}]}])
    source = ({"type": "url", "url": url} if not url.startswith("data:")
              else {"type": "base64", "media_type": "image/png", "data": url.split(",", 1)[1]})
    with pytest.raises(anthropic.BadRequestError) as claude:
        real.anthropic.messages.create(model=MODEL, max_tokens=4, messages=[
            {"role": "user", "content": [{"type": "image", "source": source}]}])
    assert claude.value.body["type"] == "error"  # type: ignore[index]
    assert chat_image(real.openai, IMAGE_URL).choices  # still serving


def test_fetch_from_loopback_when_allowed(trusting: Clients, files: str) -> None:
    assert chat_image(trusting.openai, f"{files}/cat.png").usage.prompt_tokens > 8
    assert chat_image(trusting.openai, f"{files}/moved").choices  # a redirect, checked again
    for path, code in (("/loop", "media_fetch_failed"), ("/big.png", "media_too_large"),
                       ("/nope.png", "media_fetch_failed")):
        with pytest.raises(openai.BadRequestError) as exc:
            chat_image(trusting.openai, f"{files}{path}")
        assert exc.value.body["code"] == code  # type: ignore[index]


def test_frame_and_duration_limits(trusting: Clients) -> None:
    long_clip = "data:video/mp4;base64," + base64.b64encode(mp4(num_frames=12, fps=4)).decode()  # 3 s > 1 s
    content = [{"type": "video_url", "video_url": {"url": long_clip}}]
    with pytest.raises(openai.BadRequestError) as exc:
        trusting.openai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                                max_tokens=4)
    assert exc.value.body["code"] == "media_too_large"  # type: ignore[index]
    raw = httpx.post(f"{trusting.base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {trusting.secret}"},
                     json={"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": [
                         {"type": "image_url", "image_url": {"url": IMAGE_URL}}] * 2}]})
    assert raw.status_code == 200


@pytest.mark.parametrize(("address", "allowed"), [
    ("93.184.215.14", True), ("2606:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("192.168.0.1", False), ("172.16.5.5", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("0.0.0.0", False), ("::1", False), ("fe80::1", False), ("fd00:ec2::254", False), ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False), ("224.0.0.1", False), ("not-an-ip", False),
])
def test_private_range_decision(address: str, allowed: bool) -> None:
    assert is_allowed_address(address, allow_private=False) is allowed


def test_fetch_refuses_a_name_that_resolves_private_before_connecting() -> None:
    contacted: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        contacted.append(host)
        return ["93.184.215.14", "10.0.0.7"]  # one private answer is enough to refuse

    with pytest.raises(MediaError) as exc:
        fetch("https://images.example.com/cat.png", 1000, FetchPolicy(), resolver)
    assert exc.value.code == "media_url_not_allowed" and contacted == ["images.example.com"]
    assert "10.0.0.7" not in exc.value.message
