"""Image and video processors against transformers 5.23's Qwen3-VL processors on the same inputs, limits and
sniffing, and placeholder expansion by id.

Images: pixel values and grids equal `Qwen2VLImageProcessorPil` (the checkpoint's preprocessor_config.json).
Videos: transformers' `Qwen3VLVideoProcessor` resizes with torchvision, which does not load beside the CPU torch
here, so frame sampling and timestamps are compared with its own functions and the pixels with its algorithm on
the same decoded frames at a size that needs no resize (normalise + patchify)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from media_cases import mp4, png
from qwen35.processor import load_processor
from qwen35.processor.image import VisionPreprocessing, process_image
from qwen35.processor.media import MediaLimits, VisionProcessor, expand_media
from qwen35.processor.media_errors import MediaError
from qwen35.processor.video import decode_frames, process_frames, sample_indices, timestamps

ASSETS = "src/qwen35/assets/qwen3.5-4b"


@pytest.fixture(scope="module")
def image_config() -> dict:
    from importlib import resources

    return json.loads(resources.files("qwen35").joinpath("assets/qwen3.5-4b/preprocessor_config.json").read_text())


@pytest.mark.parametrize(("width", "height", "mode"), [(300, 200, "RGB"), (1024, 768, "RGB"), (50, 37, "RGBA"),
                                                       (64, 64, "L"), (4000, 90, "P")])
def test_image_pixels_equal_transformers(image_config: dict, width: int, height: int, mode: str) -> None:
    import io

    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    ref = Qwen2VLImageProcessorPil(**{k: v for k, v in image_config.items() if not k.endswith("_class")
                                      and k != "image_processor_type"})
    data = png(width, height, seed=width, mode=mode)
    expected = ref(images=[Image.open(io.BytesIO(data))], return_tensors="np")
    ours = process_image(data, VisionPreprocessing.from_dict(image_config), 10**8)
    assert ours.grid == tuple(expected["image_grid_thw"][0])
    assert np.abs(ours.patches - expected["pixel_values"]).max() < 1e-6


def test_video_sampling_and_timestamps_equal_transformers() -> None:
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
    from transformers.video_utils import VideoMetadata

    ref = Qwen3VLVideoProcessor()
    for total, fps in [(20, 10.0), (300, 30.0), (7, 24.0), (100, 25.0), (5000, 29.97)]:
        expected = ref.sample_frames(VideoMetadata(total_num_frames=total, fps=fps))
        ours = sample_indices(total, fps, 2.0)
        assert ours == expected.tolist()
        stamps = Qwen3VLProcessor._calculate_timestamps(None, list(expected), fps, 2)  # type: ignore[arg-type]
        assert timestamps(ours, fps, 2) == pytest.approx(stamps)


def test_video_pixels_follow_the_reference_algorithm() -> None:
    """On the decoded frames at a size smart-resize keeps (64 x 64), patches equal transformers' video patchify."""
    import torch
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    config = VisionPreprocessing.load(None, "video_preprocessor_config.json")
    frames, indices, fps = decode_frames(mp4(num_frames=10, fps=5), 2.0, 768, 60, 10**8)
    ours = process_frames(frames, indices, fps, config)
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()[None] / 255  # [1, T, 3, H, W]
    video = (video - 0.5) / 0.5
    expected, t, h, w = Qwen3VLVideoProcessor().patchify(video, patch_size=16, merge_size=2, temporal_patch_size=2)
    assert ours.grid == (t, h, w) and np.abs(ours.patches - expected[0].numpy()).max() < 1e-6
    assert len(indices) == 4 and ours.timestamps == pytest.approx(tuple(timestamps(indices, fps, 2)))


def test_limits_and_sniffing() -> None:
    vision = VisionProcessor.load(None, MediaLimits(max_image_bytes=5000, max_source_pixels=100 * 100,
                                                    max_video_frames=4, max_video_seconds=2))
    with pytest.raises(MediaError, match="bytes"):
        vision.image(png(200, 200))
    with pytest.raises(MediaError, match="pixels"):
        VisionProcessor.load(None, MediaLimits(max_source_pixels=100)).image(png(20, 20))
    with pytest.raises(MediaError, match="not an image"):
        vision.image(b"GIF89a but not really")
    with pytest.raises(MediaError, match="not an image"):
        VisionProcessor.load(None).image(mp4())
    with pytest.raises(MediaError, match="the limit is 2 s"):
        vision.video(mp4(num_frames=12, fps=4))
    with pytest.raises(MediaError, match="not a video"):
        vision.video(png(32, 32))
    assert vision.video(mp4(num_frames=8, fps=4)).grid[0] == 2  # 4 sampled frames max -> 2 temporal groups


def test_expansion_by_id(tiny_checkpoint) -> None:
    processor = load_processor(tiny_checkpoint)
    vision = processor.vision
    ids = processor.encode_chat([{"role": "user", "content": [{"type": "image"}, {"type": "video"},
                                                              {"type": "text", "text": "hi"}]}])
    image, video = vision.image(png(64, 64)), vision.video(mp4(num_frames=8, width=64, height=64))
    out, media = expand_media(ids, [image], [video], processor.special_ids, processor.tokenizer)
    special = processor.special_ids
    assert [m.num_tokens for m in media] == [64, 4, 4]  # 256 x 256 after resize; 2 groups of 2 x 2
    assert all(out[m.offset : m.end] == [out[m.offset]] * m.num_tokens for m in media)
    assert out[media[1].offset - 1] == special.vision_start and out[media[1].end] == special.vision_end
    text = processor.tokenizer.decode(out[media[0].end : media[2].end + 1])
    assert "<0.2 seconds>" in text and "<1.5 seconds>" in text  # frames 0, 2, 5, 7 at 4 fps: 0.25 s and 1.5 s
    with pytest.raises(MediaError, match="placeholders"):
        expand_media(ids, [], [video], special, processor.tokenizer)
