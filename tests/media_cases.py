"""Media test inputs: deterministic random images (PNG bytes), videos (MPEG-4 bytes, encoded with PyAV) and the
transformers reference forward over a prompt with media."""

from __future__ import annotations

import io

import av
import numpy as np
import torch
from PIL import Image


def png(width: int, height: int, seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB").convert(mode)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def mp4(num_frames: int = 12, width: int = 64, height: int = 64, fps: int = 4, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def reference_logprobs(model, ids: list[int], media, image_pad: int, video_pad: int) -> torch.Tensor:
    """log_softmax of transformers' logits [len(ids), V] for a prompt with media runs (ours, as MediaInputs)."""
    images = [m for m in media if ids[m.offset] == image_pad]
    videos = [m for m in media if ids[m.offset] == video_pad]
    kwargs: dict = {}
    token_types = torch.zeros(1, len(ids), dtype=torch.long)
    input_ids = torch.tensor([ids])
    token_types[input_ids == image_pad] = 1
    token_types[input_ids == video_pad] = 2
    if images:
        kwargs["pixel_values"] = torch.from_numpy(np.concatenate([m.patches for m in images]))
        kwargs["image_grid_thw"] = torch.tensor([m.grid for m in images])
    if videos:  # one video's temporal groups, as the processor would give them: one grid of t groups
        kwargs["pixel_values_videos"] = torch.from_numpy(np.concatenate([m.patches for m in videos]))
        kwargs["video_grid_thw"] = torch.tensor([[len(videos), *videos[0].grid[1:]]])
    model.model.rope_deltas = None
    with torch.no_grad():
        logits = model(input_ids=input_ids, mm_token_type_ids=token_types, **kwargs).logits[0]
    model.model.rope_deltas = None
    return torch.log_softmax(logits.float(), dim=-1)
