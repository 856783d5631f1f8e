"""Media parts of messages: what API converters put in content lists, and how the core turns them into pixels.

Owns `MediaPart` (an image or video given by URL, data: URL or base64, with its `detail` / `fps`) and
`MediaResolver` (bytes from data URLs, base64 or a safe fetch, then the checkpoint's image / video processors).
Converters place `{"type": "image" | "video", "image" | "video": MediaPart}` items in a message's content list;
the chat template renders one vision placeholder per item, which the processor expands by id.
Invariant: a declared media type is never trusted (the processors sniff the bytes); every failure is an
`InvalidRequestError` naming the part's request field.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from qwen35.processor.image import ProcessedImage
from qwen35.processor.media import MediaLimits, VisionProcessor
from qwen35.processor.media_errors import MediaError
from qwen35.processor.video import ProcessedVideo
from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.media_fetch import FetchPolicy, Resolver, fetch, system_resolver

MediaKind = Literal["image", "video"]


@dataclass(frozen=True)
class MediaPart:
    kind: MediaKind
    url: str | None = None  # http(s) or data: URL
    base64_data: str | None = field(default=None, repr=False)  # Anthropic base64 sources
    media_type: str | None = None  # declared only; the bytes decide
    detail: str | None = None  # OpenAI image detail: auto / low / high
    fps: float | None = None  # video sampling rate (frames per second)
    param: str = "messages"  # the request field named in errors

    def to_template(self) -> dict[str, Any]:
        """The content item the chat template reads (it renders one vision placeholder for it)."""
        return {"type": self.kind, self.kind: "<media>"}


def media_parts(messages: Sequence[Mapping[str, Any]]) -> list[MediaPart]:
    """Media parts in template order: messages in order, content items in order."""
    found: list[MediaPart] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for item in content:
                if isinstance(item, Mapping):
                    part = item.get("image", item.get("video"))
                    if isinstance(part, MediaPart):
                        found.append(part)
    return found


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages with every MediaPart item replaced by its plain template item."""
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            out.append({**message, "content": [_template_item(item) for item in content]})
        else:
            out.append(dict(message))
    return out


def _template_item(item: Any) -> Any:
    if isinstance(item, Mapping):
        part = item.get("image", item.get("video"))
        if isinstance(part, MediaPart):
            return part.to_template()
    return item


@dataclass(frozen=True)
class LoadedMedia:
    images: list[ProcessedImage]
    videos: list[ProcessedVideo]


class MediaResolver:
    """Bytes of each part (decoded or fetched under the policy) through the checkpoint's processors."""

    def __init__(self, processor: VisionProcessor | None, policy: FetchPolicy | None = None,
                 resolver: Resolver = system_resolver) -> None:
        self.processor = processor
        self.policy = policy or FetchPolicy()
        self.resolver = resolver

    @property
    def limits(self) -> MediaLimits:
        return self.processor.limits if self.processor is not None else MediaLimits()

    def load(self, parts: Sequence[MediaPart]) -> LoadedMedia:
        if not parts:
            return LoadedMedia([], [])
        if self.processor is None:
            raise InvalidRequestError("This model has no vision tower: image and video input are not supported",
                                      param=parts[0].param, code="unsupported_media")
        if len(parts) > self.limits.max_items:
            raise InvalidRequestError(f"A request may carry at most {self.limits.max_items} images and videos; "
                                      f"this one has {len(parts)}", param=parts[0].param, code="too_many_media")
        images: list[ProcessedImage] = []
        videos: list[ProcessedVideo] = []
        for part in parts:
            try:
                data = self._bytes(part)
                if part.kind == "image":
                    images.append(self.processor.image(data, part.detail))
                else:
                    videos.append(self.processor.video(data, part.fps))
            except MediaError as exc:
                raise InvalidRequestError(f"Invalid {part.kind}: {exc.message}", param=part.param,
                                          code=exc.code) from exc
        return LoadedMedia(images, videos)

    def _bytes(self, part: MediaPart) -> bytes:
        limit = self.limits.max_image_bytes if part.kind == "image" else self.limits.max_video_bytes
        if part.base64_data is not None:
            return _b64(part.base64_data, limit)
        if not part.url:
            raise MediaError(f"the {part.kind} has no url or data")
        if part.url.startswith("data:"):
            return _data_url(part.url, limit)
        return fetch(part.url, limit, self.policy, self.resolver)


def _b64(text: str, limit: int) -> bytes:
    if len(text) * 3 // 4 > limit + 3:
        raise MediaError(f"the data is larger than the limit of {limit} bytes", code="media_too_large")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError("the data is not valid base64") from exc


def _data_url(url: str, limit: int) -> bytes:
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise MediaError("the data: URL has no ',' before its data")
    if header.split(";")[-1].strip().lower() == "base64":
        return _b64(payload, limit)
    data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > limit:
        raise MediaError(f"the data is larger than the limit of {limit} bytes", code="media_too_large")
    return data
