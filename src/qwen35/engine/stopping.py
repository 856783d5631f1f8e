"""What one sampled token does to its sequence: the thinking budget and the stop conditions.

No torch, no model: plain data in, plain data out (the scheduler's `update` calls these for every sampled token).
Owns the order of the stop checks: stop/eos id (once `min_tokens` are out), grammar termination, `max_tokens`,
context full. Invariant: a sequence stopped by a stop/eos id is reported with `stop_token_id` set; that id is
never a delta's new token (the convention stated in `engine.request`).
"""

from __future__ import annotations

from qwen35.engine.request import FinishReason, SamplingParams
from qwen35.engine.sequence import Sequence


def track_thinking(seq: Sequence, token: int) -> None:
    """Count a reasoning token; at the budget, queue the forced wind-down and `</think>`."""
    budget = seq.params.thinking_budget
    if budget is None or not seq.thinking:
        return
    if seq.forced_token_ids:
        seq.forced_token_ids.pop(0)
    seq.num_reasoning_tokens += 1
    if token == budget.think_end_id:
        seq.thinking = False
        seq.forced_token_ids.clear()
    elif seq.num_reasoning_tokens >= budget.max_thinking_tokens and not seq.forced_token_ids:
        seq.forced_token_ids = [*budget.wind_down_ids, budget.think_end_id]


def is_stop_id(params: SamplingParams, token: int, eos_token_ids: tuple[int, ...]) -> bool:
    if params.stop_token_ids and token in params.stop_token_ids:
        return True
    return not params.ignore_eos and token in eos_token_ids


def stop_reason(
    seq: Sequence, token: int, eos_token_ids: tuple[int, ...], max_model_len: int, constrained: bool = False
) -> FinishReason | None:
    """Why `seq` ends now that `token` was appended to its output, or None when it goes on. `constrained`: the
    token was sampled under the sample's grammar (which then advances with it)."""
    params = seq.params
    if len(seq.output_token_ids) > params.min_tokens - 1 and is_stop_id(params, token, eos_token_ids):
        return FinishReason.STOP
    if constrained and seq.grammar is not None:
        # A refused token only comes from the sampler's last-resort fallback (a mask that allowed nothing):
        # the sample cannot go on inside the grammar, so it ends rather than emit unconstrained text.
        if not seq.grammar.accept(token) or seq.grammar.is_terminated():
            return FinishReason.STOP
    if params.max_tokens is not None and len(seq.output_token_ids) >= params.max_tokens:
        return FinishReason.LENGTH
    if seq.num_tokens >= max_model_len:
        return FinishReason.LENGTH
    return None
