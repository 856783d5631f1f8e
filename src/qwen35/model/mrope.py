"""Three-stream (temporal / height / width) positions of a prompt with media, as transformers' `get_rope_index`.

Pure torch. Text tokens take one position each, equal on the three streams. A media run of a merged h x w grid
starting at running position p gives token (i, j) the positions (p, p + i, p + j) and then advances p by
max(h, w), not by h * w: after the first media run a token's position is its index plus a `delta` (negative),
which is how decode positions are found without the prompt. Invariant: positions of a token range depend only
on the token index and the runs before it, so a prefill chunk can start anywhere (inside an image too).
"""

from __future__ import annotations

import torch

# (offset in the token sequence, merged grid height, merged grid width) of each media run, sorted by offset.
Span = tuple[int, int, int]


def position_delta(spans: list[Span], upto: int | None = None) -> int:
    """Position minus index for tokens after every run that ends at or before `upto` (all runs when None)."""
    delta = 0
    for offset, h, w in spans:
        if upto is not None and offset + h * w > upto:
            break
        delta += max(h, w) - h * w
    return delta


def media_positions(spans: list[Span], start: int, end: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Positions [3, end - start] (long) of tokens start .. end - 1 of a sequence with these media runs."""
    out = torch.arange(start, end, device=device).unsqueeze(0).repeat(3, 1)
    delta = 0
    for offset, h, w in spans:
        run_end = offset + h * w
        if offset >= end:
            break
        # tokens between the previous run and this one (and those after it) shift by the delta so far
        lo, hi = max(start, offset), min(end, run_end)
        if lo < hi:
            base = offset + delta  # the running position where the run starts
            k = torch.arange(lo - offset, hi - offset, device=device)
            rows, cols = k // w, k % w
            out[0, lo - start : hi - start] = base
            out[1, lo - start : hi - start] = base + rows
            out[2, lo - start : hi - start] = base + cols
        delta += max(h, w) - h * w
        if run_end < end:
            tail = max(start, run_end)
            out[:, tail - start :] = torch.arange(tail, end, device=device) + delta
    return out
