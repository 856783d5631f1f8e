"""Media in prompts: limits, the image / video processors of a checkpoint, and placeholder expansion by id.

Owns `MediaLimits` (what the server accepts: bytes, source pixels, frames, seconds, items per request),
`VisionProcessor` (the checkpoint's preprocessor configs with its limits) and `expand_media`, which turns a
rendered prompt's single `<|image_pad|>` / `<|video_pad|>` per item into the reference's runs: an image becomes
h*w/4 image pads; a video's one pad becomes, per temporal group, `<t.t seconds>` + `<|vision_start|>` + pads +
`<|vision_end|>` (Qwen3-VL keeps the template's own start/end around the whole, as transformers does).
Expansion works on token ids, never on text, so user text can neither forge nor hide a placeholder.
Invariant: the i-th image pad of the prompt takes the i-th image, the i-th video pad the i-th video; counts
must agree or the request is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from qwen35.engine.request import MediaInput
from qwen35.processor.image import ProcessedImage, VisionPreprocessing, process_image
from qwen35.processor.media_errors import MediaError
from qwen35.processor.tokenizer import SpecialIds
from qwen35.processor.video import MAX_FRAMES, ProcessedVideo, process_video

MiB = 1024 * 1024
# OpenAI's "low" detail: a 512 x 512 budget (at most 16 x 16 = 256 tokens: one token per 32 x 32 pixels).
LOW_DETAIL_PIXELS = 512 * 512


@dataclass(frozen=True)
class MediaLimits:
    """What one request may send (operator-configurable; every limit is a 400 naming it)."""

    max_image_bytes: int = 20 * MiB
    max_video_bytes: int = 100 * MiB
    max_source_pixels: int = 64_000_000  # decoded width x height of an image or a video frame
    max_items: int = 32  # images + videos per request
    max_video_frames: int = MAX_FRAMES  # sampled frames per video
    max_video_seconds: float = 600.0
    image_max_pixels: int | None = None  # resize budget per image (None: the checkpoint's preprocessor config)
    video_max_pixels: int | None = None  # resize budget per video clip (None: the checkpoint's config)


class _Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class VisionProcessor:
    image_config: VisionPreprocessing
    video_config: VisionPreprocessing
    limits: MediaLimits = MediaLimits()

    @classmethod
    def load(cls, model_dir: Path | None, limits: MediaLimits | None = None) -> VisionProcessor:
        return cls(VisionPreprocessing.load(model_dir, "preprocessor_config.json"),
                   VisionPreprocessing.load(model_dir, "video_preprocessor_config.json"), limits or MediaLimits())

    def with_limits(self, limits: MediaLimits) -> VisionProcessor:
        return VisionProcessor(self.image_config, self.video_config, limits)

    def image(self, data: bytes, detail: str | None = None) -> ProcessedImage:
        if len(data) > self.limits.max_image_bytes:
            raise MediaError(f"the image has {len(data)} bytes; the limit is {self.limits.max_image_bytes}",
                             code="media_too_large")
        budget = self.limits.image_max_pixels
        if detail == "low":
            budget = min(budget or LOW_DETAIL_PIXELS, LOW_DETAIL_PIXELS)
        return process_image(data, self.image_config, self.limits.max_source_pixels, budget)

    def video(self, data: bytes, fps: float | None = None) -> ProcessedVideo:
        limits = self.limits
        if len(data) > limits.max_video_bytes:
            raise MediaError(f"the video has {len(data)} bytes; the limit is {limits.max_video_bytes}",
                             code="media_too_large")
        if fps is not None and not 0.1 <= fps <= 30:
            raise MediaError("fps must be between 0.1 and 30")
        config = self.video_config
        if limits.video_max_pixels is not None:
            config = VisionPreprocessing(config.min_pixels, min(config.max_pixels, limits.video_max_pixels),
                                         config.patch_size, config.temporal_patch_size, config.merge_size,
                                         config.image_mean, config.image_std)
        return process_video(data, config, fps=fps, max_frames=limits.max_video_frames,
                             max_seconds=limits.max_video_seconds, max_source_pixels=limits.max_source_pixels)


def digest(patches: object, grid: tuple[int, int, int], tag: bytes = b"") -> bytes:
    """Content hash of processed pixels and their grid (the prefix-cache key part of a media run)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(tag + repr(grid).encode())
    h.update(memoryview(patches))  # type: ignore[arg-type]  # a C-contiguous float32 array
    return h.digest()


def expand_media(
    prompt_ids: Sequence[int],
    images: Sequence[ProcessedImage],
    videos: Sequence[ProcessedVideo],
    ids: SpecialIds,
    tokenizer: _Encoder,
    merge_size: int = 2,
) -> tuple[list[int], tuple[MediaInput, ...]]:
    """Prompt ids with every media placeholder expanded, and the media runs (offsets into the new ids)."""
    num_image_pads = sum(1 for t in prompt_ids if t == ids.image_pad)
    num_video_pads = sum(1 for t in prompt_ids if t == ids.video_pad)
    if num_image_pads != len(images) or num_video_pads != len(videos):
        raise MediaError(f"the rendered prompt has {num_image_pads} image and {num_video_pads} video placeholders "
                         f"for {len(images)} images and {len(videos)} videos")
    out: list[int] = []
    media: list[MediaInput] = []
    next_image, next_video = iter(images), iter(videos)
    for token in prompt_ids:
        if token == ids.image_pad:
            image = next(next_image)
            media.append(_run(len(out), image.grid, image.patches, b"image", merge_size))
            out.extend([ids.image_pad] * media[-1].num_tokens)
        elif token == ids.video_pad:
            video = next(next_video)
            t, h, w = video.grid
            rows = h * w
            for g in range(t):
                out.extend(tokenizer.encode(f"<{video.timestamps[g]:.1f} seconds>"))
                out.append(ids.vision_start)
                frame = video.patches[g * rows : (g + 1) * rows]
                media.append(_run(len(out), (1, h, w), frame, b"video", merge_size))
                out.extend([ids.video_pad] * media[-1].num_tokens)
                out.append(ids.vision_end)
        else:
            out.append(int(token))
    return out, tuple(media)


def _run(offset: int, grid: tuple[int, int, int], patches: object, tag: bytes, merge_size: int) -> MediaInput:
    return MediaInput(offset=offset, grid=grid, merge_size=merge_size, patches=patches,
                      digest=digest(patches, grid, tag))
