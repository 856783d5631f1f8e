"""Images in: bytes -> checked, decoded RGB -> smart-resized, normalised patches in the vision tower's layout.

Owns the image half of the Qwen3-VL processor (transformers 5.23 `Qwen2VLImageProcessorPil`, the checkpoint's
preprocessor_config.json): `smart_resize` to multiples of patch x merge (32) within [min_pixels, max_pixels],
Pillow bicubic resampling, rescale to [0, 1], normalise by mean / std, and patches flattened in merge-block order
with each frame repeated over the temporal patch. Pillow and numpy only (no torch).
Invariants: the format is sniffed from the bytes, never trusted from a name or a MIME type; the pixel count is
checked before the pixels are decoded (decompression bombs never allocate); every failure is a `MediaError`.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from qwen35.processor.media_errors import MediaError

# What Pillow may open: still formats browsers and the OpenAI / Anthropic APIs accept.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


@dataclass(frozen=True)
class VisionPreprocessing:
    """The fields of preprocessor_config.json (images) or video_preprocessor_config.json (videos) we use."""

    min_pixels: int
    max_pixels: int
    patch_size: int = 16
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VisionPreprocessing:
        size = raw.get("size") or {}
        return cls(
            min_pixels=int(size.get("shortest_edge", raw.get("min_pixels", 56 * 56))),
            max_pixels=int(size.get("longest_edge", raw.get("max_pixels", 28 * 28 * 1280))),
            patch_size=int(raw.get("patch_size", 16)),
            temporal_patch_size=int(raw.get("temporal_patch_size", 2)),
            merge_size=int(raw.get("merge_size", 2)),
            image_mean=tuple(raw.get("image_mean", (0.5, 0.5, 0.5))),
            image_std=tuple(raw.get("image_std", (0.5, 0.5, 0.5))),
        )

    @classmethod
    def load(cls, model_dir: Path | None, filename: str) -> VisionPreprocessing:
        """The checkpoint's file when it has one, else the official Qwen3.5-4B file shipped in the package."""
        if model_dir is not None and (model_dir / filename).is_file():
            return cls.from_dict(json.loads((model_dir / filename).read_text()))
        text = resources.files("qwen35").joinpath(f"assets/qwen3.5-4b/{filename}").read_text()
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class ProcessedImage:
    patches: np.ndarray  # float32 [h * w, 3 * temporal * patch * patch], merge-block order
    grid: tuple[int, int, int]  # (1, h, w) in patches
    size: tuple[int, int]  # (width, height) of the decoded image


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor`, scaled into [min_pixels, max_pixels], aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise MediaError(f"image aspect ratio must be below 200:1, got {width}x{height}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def open_image(data: bytes, max_source_pixels: int) -> Image.Image:
    """Decode `data` as an image of an allowed format, at most `max_source_pixels` pixels, as RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombWarning) as exc:
            raise MediaError(f"the data is not an image in a supported format ({', '.join(IMAGE_FORMATS)})") from exc
        width, height = image.size
        if width < 1 or height < 1:
            raise MediaError("the image is empty")
        if width * height > max_source_pixels:
            raise MediaError(f"the image has {width * height} pixels ({width}x{height}); the limit is "
                             f"{max_source_pixels}", code="media_too_large")
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
            raise MediaError(f"the image could not be decoded ({exc})") from exc
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB as transformers' `convert_to_rgb`: transparent pixels composited over white."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def normalize(pixels: np.ndarray, config: VisionPreprocessing) -> np.ndarray:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W], rescaled to [0, 1] then (x - mean) / std."""
    scaled = pixels.astype(np.float32) * np.float32(1 / 255)
    mean = np.asarray(config.image_mean, dtype=np.float32)
    std = np.asarray(config.image_std, dtype=np.float32)
    out = (scaled - mean) / std
    return np.moveaxis(out, -1, -3)


def patchify(frames: np.ndarray, config: VisionPreprocessing) -> tuple[np.ndarray, tuple[int, int, int]]:
    """float32 [T, 3, H, W] (T a multiple of the temporal patch) -> ([t * h * w, patch_dim], (t, h, w))."""
    num_frames, channels, height, width = frames.shape
    p, m, tp = config.patch_size, config.merge_size, config.temporal_patch_size
    t, h, w = num_frames // tp, height // p, width // p
    x = frames.reshape(t, tp, channels, h // m, m, p, w // m, m, p)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # t, block row, block col, in-row, in-col, C, tp, ph, pw
    return np.ascontiguousarray(x.reshape(t * h * w, channels * tp * p * p)), (t, h, w)


def process_image(data: bytes, config: VisionPreprocessing, max_source_pixels: int,
                  max_pixels: int | None = None) -> ProcessedImage:
    """Bytes of one image -> its patches and grid (`max_pixels` lowers the resize budget, e.g. detail "low")."""
    image = open_image(data, max_source_pixels)
    width, height = image.size
    budget = config.max_pixels if max_pixels is None else min(max_pixels, config.max_pixels)
    new_h, new_w = smart_resize(height, width, config.factor, config.min_pixels, max(budget, config.min_pixels))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), resample=Image.Resampling.BICUBIC)
    frame = normalize(np.asarray(image, dtype=np.uint8), config)[None]  # [1, 3, H, W]
    frames = np.repeat(frame, config.temporal_patch_size, axis=0)  # a still image fills every temporal slot
    patches, grid = patchify(frames, config)
    return ProcessedImage(patches=patches, grid=grid, size=(width, height))
