"""Videos in: bytes -> PyAV-decoded frames -> sampled at an fps -> smart-resized, normalised patches + timestamps.

Owns the video half of the Qwen3-VL processor (transformers 5.23 `Qwen3VLVideoProcessor` and the timestamps of
`Qwen3VLProcessor`, with the checkpoint's video_preprocessor_config.json): `fps` frames per second sampled
uniformly (default 2, between `min_frames` 4 and `max_frames`), one size for all frames from a budget over the
whole clip, bicubic resampling (Pillow here; the reference resizes with torchvision, so pixels may differ by a
rounding step), frames padded to the temporal patch (2) by repeating the last, and one timestamp per temporal
group: the mean time of its two frames, rendered by the template side as `<t.t seconds>`.
Invariants: the container is decoded by PyAV (FFmpeg), never a shell; limits on frames and duration are
checked before frames are kept, and only sampled frames are converted to RGB; failures are `MediaError`s.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from PIL import Image

from qwen35.processor.image import VisionPreprocessing, normalize, patchify
from qwen35.processor.media_errors import MediaError

DEFAULT_FPS = 2.0
MIN_FRAMES = 4
MAX_FRAMES = 768


@dataclass(frozen=True)
class ProcessedVideo:
    patches: np.ndarray  # float32 [t * h * w, patch_dim], temporal groups in order
    grid: tuple[int, int, int]  # (t, h, w): t temporal groups of two frames
    timestamps: tuple[float, ...]  # seconds, one per temporal group
    frame_indices: tuple[int, ...]
    source_fps: float


def sample_indices(total_frames: int, source_fps: float, fps: float, max_frames: int = MAX_FRAMES) -> list[int]:
    """The reference's uniform sampling: int(duration * fps) frames within [MIN_FRAMES, max_frames, total]."""
    num = int(total_frames / source_fps * fps)
    num = min(max(num, MIN_FRAMES), max_frames, total_frames)
    return [int(i) for i in np.linspace(0, total_frames - 1, num).round().astype(int)]


def timestamps(indices: list[int], source_fps: float, temporal_patch: int) -> list[float]:
    """Mean time of each temporal group of frames (the last index repeated to fill the final group)."""
    padded = list(indices)
    if len(padded) % temporal_patch:
        padded.extend([padded[-1]] * (temporal_patch - len(padded) % temporal_patch))
    times = [i / source_fps for i in padded]
    return [(times[i] + times[i + temporal_patch - 1]) / 2 for i in range(0, len(times), temporal_patch)]


def smart_resize_video(num_frames: int, height: int, width: int, config: VisionPreprocessing) -> tuple[int, int]:
    """One (height, width) for every frame, multiples of patch x merge, the clip's pixels within the budget."""
    factor, tp = config.factor, config.temporal_patch_size
    if num_frames < tp:
        raise MediaError(f"a video needs at least {tp} frames")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise MediaError(f"video aspect ratio must be below 200:1, got {width}x{height}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / tp) * tp
    if t_bar * h_bar * w_bar > config.max_pixels:
        beta = math.sqrt((num_frames * height * width) / config.max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < config.min_pixels:
        beta = math.sqrt(config.min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def decode_frames(data: bytes, fps: float, max_frames: int, max_seconds: float,
                  max_source_pixels: int) -> tuple[list[np.ndarray], list[int], float]:
    """Sampled RGB frames (uint8 [H, W, 3]), their indices and the source fps, decoded with PyAV.

    The frame count comes from the container (or a count of the stream's packets, no decoding), so the limits are
    checked and the indices chosen before any frame is decoded; only the sampled frames are kept."""
    import av  # imported on first video: FFmpeg's libraries are large

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            names = set(container.format.name.split(","))
            if not container.streams.video or names & {"image2", "gif"} or any(n.endswith("_pipe") for n in names):
                raise MediaError("the data is not a video in a supported format (a still image is not a video)")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(24)
            source_fps = float(rate)
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > max_source_pixels:
                raise MediaError(f"video frames have {width * height} pixels; the limit is {max_source_pixels}",
                                 code="media_too_large")
            total = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        if total < 1:
            raise MediaError("the video has no frames")
        if total / source_fps > max_seconds:
            raise MediaError(f"the video lasts {total / source_fps:.1f} s; the limit is {max_seconds:g} s",
                             code="media_too_large")
        indices = sample_indices(total, source_fps, fps, max_frames)
        wanted = set(indices)
        kept: dict[int, np.ndarray] = {}
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i in wanted:
                    kept[i] = frame.to_ndarray(format="rgb24")
                if i >= indices[-1]:
                    break
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, IndexError) as exc:
        raise MediaError("the data is not a video in a supported format") from exc
    if not kept:
        raise MediaError("the video has no decodable frames")
    # A container that over-reports its frames: the frames past the last decoded one repeat it.
    last = kept[max(kept)]
    frames = [kept.get(i, last) for i in indices]
    return frames, indices, source_fps


def process_frames(frames: list[np.ndarray], indices: list[int], source_fps: float,
                   config: VisionPreprocessing) -> ProcessedVideo:
    """Sampled frames -> patches in the vision tower's layout, with one timestamp per temporal group."""
    height, width = frames[0].shape[:2]
    new_h, new_w = smart_resize_video(len(frames), height, width, config)
    resized = [
        np.asarray(Image.fromarray(f).resize((new_w, new_h), resample=Image.Resampling.BICUBIC), dtype=np.uint8)
        if f.shape[:2] != (new_h, new_w) else f
        for f in frames
    ]
    stack = normalize(np.stack(resized), config)  # [T, 3, H, W]
    if pad := -len(resized) % config.temporal_patch_size:
        stack = np.concatenate([stack, np.repeat(stack[-1:], pad, axis=0)])
    patches, grid = patchify(stack, config)
    stamps = timestamps(indices, source_fps, config.temporal_patch_size)
    return ProcessedVideo(patches=patches, grid=grid, timestamps=tuple(stamps), frame_indices=tuple(indices),
                          source_fps=source_fps)


def process_video(data: bytes, config: VisionPreprocessing, *, fps: float | None, max_frames: int,
                  max_seconds: float, max_source_pixels: int) -> ProcessedVideo:
    """Bytes of one video -> its patches, grid and timestamps."""
    frames, indices, source_fps = decode_frames(data, fps or DEFAULT_FPS, max_frames, max_seconds,
                                                max_source_pixels)
    if len(frames) < config.temporal_patch_size:
        frames, indices = frames + [frames[-1]], indices + [indices[-1]]  # a one-frame clip: a still
    return process_frames(frames, indices, source_fps, config)
