"""Per-row logits processing that runs before token selection: bias, bans, grammar mask, penalties.

Owns the vLLM-compatible order logit_bias -> banned ids -> allowed mask -> repetition penalty (prompt + output
tokens) -> frequency and presence penalties (output tokens only), and the fallback when a row ends up with no
allowed token at all. Imports torch and `engine.request` only; never the model, text or HTTP.
Invariant: a processed row contains no NaN and no +inf, and has at least one finite logit whenever the raw row
had one, so selection downstream never divides by zero or indexes out of range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from qwen35.engine.sampler import SamplingRow

_NEG_INF = float("-inf")


def needs_processing(row: SamplingRow) -> bool:
    """True when any control would change this row's logits (otherwise the raw row is used uncopied)."""
    params = row.params
    if params.logit_bias or len(row.banned_token_ids) or row.allowed_mask is not None:
        return True
    if params.repetition_penalty != 1.0 and (len(row.prompt_token_ids) or len(row.output_token_ids)):
        return True
    return (params.frequency_penalty != 0.0 or params.presence_penalty != 0.0) and len(row.output_token_ids) > 0


def process_row(out: torch.Tensor, raw: torch.Tensor, row: SamplingRow) -> None:
    """Overwrite `out` (a copy of `raw`, shape [V]) with the processed logits of `row`, in place.

    When bans and the grammar mask together leave nothing, the bans are dropped first (a finished grammar that
    only allows EOS must win over min_tokens), then the mask (a mask that allows nothing is a grammar bug; better
    an unconstrained token than a crash or a NaN).
    """
    constrained = len(row.banned_token_ids) > 0 or row.allowed_mask is not None
    _apply(out, row, use_banned=True, use_mask=True)
    if not constrained or _has_finite(out) or not _has_finite(raw):
        return
    for use_banned, use_mask in ((False, True), (False, False)):
        out.copy_(raw)
        _apply(out, row, use_banned=use_banned, use_mask=use_mask)
        if _has_finite(out):
            return


def _has_finite(x: torch.Tensor) -> bool:
    return bool(x.max() > _NEG_INF)


def _apply(out: torch.Tensor, row: SamplingRow, use_banned: bool, use_mask: bool) -> None:
    params = row.params
    vocab_size = out.shape[0]
    device = out.device
    if params.logit_bias:
        ids, biases = _bias_tensors(params.logit_bias, vocab_size, out.dtype, device)
        if ids.numel():
            out.index_add_(0, ids, biases)
    if use_banned and len(row.banned_token_ids):
        banned = _id_tensor(row.banned_token_ids, vocab_size, device)
        if banned.numel():
            out.index_fill_(0, banned, _NEG_INF)
    if use_mask and row.allowed_mask is not None:
        out.masked_fill_(~_fit_mask(row.allowed_mask, vocab_size, device), _NEG_INF)
    if params.repetition_penalty != 1.0:
        _repetition_penalty(out, row, params.repetition_penalty)
    if params.frequency_penalty != 0.0 or params.presence_penalty != 0.0:
        output_ids = _id_tensor(row.output_token_ids, vocab_size, device)
        if output_ids.numel():
            if params.frequency_penalty != 0.0:
                # index_add_ accumulates duplicates: subtracts frequency_penalty * count(token) in one pass.
                step = torch.full(output_ids.shape, -params.frequency_penalty, dtype=out.dtype, device=device)
                out.index_add_(0, output_ids, step)
            if params.presence_penalty != 0.0:
                present = torch.unique(output_ids)
                step = torch.full(present.shape, -params.presence_penalty, dtype=out.dtype, device=device)
                out.index_add_(0, present, step)
    # A tiny repetition penalty divides a positive logit past float32's range; +inf would turn the
    # max-subtraction downstream into NaN, so saturate it (NaN from a broken input becomes "never pick").
    torch.nan_to_num_(out, nan=_NEG_INF, posinf=torch.finfo(out.dtype).max, neginf=_NEG_INF)


def _repetition_penalty(out: torch.Tensor, row: SamplingRow, penalty: float) -> None:
    """HF/vLLM rule on every token seen in prompt or output: positive logits / penalty, negative * penalty."""
    vocab_size = out.shape[0]
    seen = torch.zeros(vocab_size, dtype=torch.bool, device=out.device)
    for ids in (row.prompt_token_ids, row.output_token_ids):
        tensor = _id_tensor(ids, vocab_size, out.device)
        if tensor.numel():
            seen[tensor] = True
    index = seen.nonzero().squeeze(1)
    if index.numel():
        values = out[index]
        out[index] = torch.where(values > 0, values / penalty, values * penalty)


def _id_tensor(ids: Sequence[int] | torch.Tensor, vocab_size: int, device: torch.device) -> torch.Tensor:
    """Token ids as a long tensor on `device`, ids outside [0, vocab) dropped (never an index error)."""
    if isinstance(ids, torch.Tensor):
        tensor = ids.to(device=device, dtype=torch.long).reshape(-1)
    else:
        tensor = torch.as_tensor(list(ids) if not isinstance(ids, list) else ids, dtype=torch.long, device=device)
    if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= vocab_size):
        tensor = tensor[(tensor >= 0) & (tensor < vocab_size)]
    return tensor


def _bias_tensors(
    logit_bias: dict[int, float], vocab_size: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [(int(k), float(v)) for k, v in logit_bias.items() if 0 <= int(k) < vocab_size]
    ids = torch.tensor([k for k, _ in pairs], dtype=torch.long, device=device)
    biases = torch.tensor([v for _, v in pairs], dtype=dtype, device=device)
    return ids, biases


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Bool allowed-masks [rows, vocab_size] of an int32 bitmask [rows, ceil(vocab / 32)] (bit j of word w =
    token 32w + j, the layout xgrammar fills)."""
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1  # [rows, W, 32]
    return bits.reshape(bitmask.shape[0], -1)[:, :vocab_size].bool()


def _fit_mask(mask: torch.Tensor, vocab_size: int, device: torch.device) -> torch.Tensor:
    """The grammar's bool mask sized to the model vocab: padding ids past the tokenizer's vocab are disallowed."""
    mask = mask.to(device=device, dtype=torch.bool).reshape(-1)
    if mask.shape[0] == vocab_size:
        return mask
    if mask.shape[0] > vocab_size:
        return mask[:vocab_size]
    fitted = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    fitted[: mask.shape[0]] = mask
    return fitted
