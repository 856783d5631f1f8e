"""The vision tower and the 3-D positions equal transformers 5.23 on the tiny checkpoint (fp32)."""

from __future__ import annotations

import pytest
import torch

from qwen35.model.mrope import media_positions, position_delta
from qwen35.model.weights import build_model, load_config


@pytest.fixture(scope="module")
def ours(tiny_checkpoint):
    return build_model(tiny_checkpoint, load_config(tiny_checkpoint), torch.float32, progress=False)


def test_vision_tower_equals_reference(ours, reference_model):
    grids = [(1, 4, 6), (2, 8, 4), (1, 12, 14), (1, 2, 2)]  # several sizes, a two-group video, a tiny image
    patches = torch.randn(sum(t * h * w for t, h, w in grids), ours.visual.config.patch_dim,
                          generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference_model.model.visual(patches, grid_thw=torch.tensor(grids)).pooler_output
    assert (ours.encode_media(patches, grids) - expected).abs().max() < 1e-5


def test_positions_equal_get_rope_index(reference_model):
    # text(3) image 2x3 text(4) image 4x2 text(5): mm_token_type_ids 1 on the image runs
    layout = [(0, 3), (1, (2, 3)), (0, 4), (1, (4, 2)), (0, 5)]
    types: list[int] = []
    spans = []
    grids = []
    for kind, value in layout:
        if kind == 0:
            types += [0] * value
        else:
            h, w = value
            spans.append((len(types), h, w))
            grids.append((1, 2 * h, 2 * w))
            types += [1] * (h * w)
    ids = torch.tensor([[248056 if t else 100 for t in types]])
    expected, delta = reference_model.model.get_rope_index(ids, torch.tensor([types]),
                                                           image_grid_thw=torch.tensor(grids))
    n = len(types)
    assert torch.equal(media_positions(spans, 0, n), expected[:, 0])
    for start, end in [(0, 5), (4, 9), (7, 20), (n - 3, n + 4)]:  # chunks starting inside runs, and decode
        full = torch.cat([expected[:, 0], torch.arange(n, n + 4).expand(3, -1) + int(delta)], dim=1)
        assert torch.equal(media_positions(spans, start, end), full[:, start:end])
    assert position_delta(spans) == int(delta)
