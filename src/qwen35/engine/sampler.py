"""Token selection for one engine step: logits [B, V] + per-row controls -> one token id (and logprobs) per row.

Owns greedy / temperature / min_p / top_k / top_p selection, per-sample seeded generators and the logprobs that
are reported (always the RAW model distribution, log_softmax of the logits before any control, as vLLM reports).
Logits processing (bias, bans, grammar mask, penalties) lives in `engine.penalties`. Imports torch and
`engine.request` only; never the model, text or HTTP.

Invariants:
- A row with a generator draws exactly one uniform number per sampled step from it and is computed alone, with
  candidates in a canonical order (value descending, ties by token id), so a seeded sample is reproducible
  bit for bit whatever else is in the batch.
- Nothing reachable from user parameters raises here: out-of-range ids are ignored, an all-banned row falls back
  (see `penalties.process_row`), top_k above the vocabulary means "disabled".
- The caller's logits tensor is never modified.

Cost model (CPU, V = 248,320): selection is one inverse-CDF draw over the candidate list, never a random number per
vocabulary entry. top_k rows cost one `topk` over V; top_p without top_k first tries the top 1,024 tokens and,
when the nucleus is wider, locates its edge with a mass histogram: the vocabulary is never fully sorted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from qwen35.engine.penalties import needs_processing, process_row
from qwen35.engine.request import SamplingParams

# vLLM treats temperatures below this as greedy: dividing by them overflows float32.
_GREEDY_TEMPERATURE = 1e-5
# Candidates tried before a full-vocabulary sort for top_p without top_k.
_TOP_P_PROBE = 1024
# Mass histogram resolution for wider nuclei (about 0.044 nats per bucket).
_HISTOGRAM_BUCKETS = 2048
# Rows of prompt logits processed at once (bounds the temporaries of logsumexp/topk).
_PROMPT_CHUNK = 128


@dataclass(frozen=True)
class SamplingRow:
    """Everything the sampler needs about one sample (one of a request's n) at this step."""

    params: SamplingParams
    prompt_token_ids: Sequence[int]  # a 1-D long tensor is accepted too (skips a list -> tensor copy)
    output_token_ids: Sequence[int]  # generated so far (penalties)
    generator: torch.Generator | None  # make_generator(seed, index) when params.seed is set, else None
    allowed_mask: torch.Tensor | None = None  # bool [V] from a grammar (True = allowed); None = all allowed
    banned_token_ids: Sequence[int] = ()  # e.g. stop/eos ids while len(output) < min_tokens
    forced_token_id: int | None = None  # thinking-budget wind-down: emitted as is, logprobs still reported


@dataclass
class SamplerOutput:
    token_ids: list[int]  # one per row
    logprobs: list[dict[int, float] | None]  # per row: {sampled id: lp, top ids: lp...} when params.logprobs set


def make_generator(seed: int, sample_index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of sample `sample_index` of a request seeded with `seed`.

    Like vLLM, sample i of n uses seed + i, so (seed=s, n=2)'s second sample equals (seed=s+1)'s first.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed((int(seed) + int(sample_index)) % 2**64)
    return generator


def sample(logits: torch.Tensor, rows: list[SamplingRow]) -> SamplerOutput:
    """Pick one token per row of `logits` [B, V] and report raw logprobs where asked."""
    if logits.dim() != 2 or logits.shape[0] != len(rows):
        raise ValueError(f"logits must be [len(rows), V]; got {tuple(logits.shape)} for {len(rows)} rows")
    if logits.dtype != torch.float32:
        logits = logits.float()
    num_rows, vocab_size = logits.shape
    token_ids: list[int] = [0] * num_rows

    greedy: list[int] = []
    by_top_k: dict[int, list[int]] = {}  # effective top_k -> rows (vocab_size = disabled)
    for i, row in enumerate(rows):
        if row.forced_token_id is not None:
            if not 0 <= row.forced_token_id < vocab_size:
                raise ValueError(f"forced token id {row.forced_token_id} is outside the vocabulary")
            token_ids[i] = int(row.forced_token_id)
        elif row.params.temperature < _GREEDY_TEMPERATURE:
            greedy.append(i)
        else:
            top_k = row.params.top_k
            by_top_k.setdefault(min(top_k, vocab_size) if top_k > 0 else vocab_size, []).append(i)

    if greedy:
        chosen = _group_logits(logits, rows, greedy).argmax(dim=-1).tolist()
        for i, token in zip(greedy, chosen):
            token_ids[i] = token
    for top_k, rows_of_k in by_top_k.items():
        # Seeded rows run alone: batched reductions may round differently with the batch's shape, and a seeded
        # sample must not depend on its neighbours even by one ulp.
        unseeded = [i for i in rows_of_k if rows[i].generator is None]
        groups = ([unseeded] if unseeded else []) + [[i] for i in rows_of_k if rows[i].generator is not None]
        for group in groups:
            if top_k < vocab_size:
                chosen = _sample_top_k(_group_logits(logits, rows, group), top_k, [rows[i] for i in group])
            else:
                chosen = _sample_full(logits, rows, group)
            for i, token in zip(group, chosen):
                token_ids[i] = token
    return SamplerOutput(token_ids=token_ids, logprobs=_logprobs(logits, rows, token_ids))


def prompt_logprobs(logits: torch.Tensor, target_ids: torch.Tensor, k: int) -> list[dict[int, float]]:
    """Raw logprobs of `target_ids[t]` under `logits[t]` [T, V], plus the k most likely tokens, per position."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be [T, V]; got {tuple(logits.shape)}")
    targets = torch.as_tensor(target_ids, dtype=torch.long, device=logits.device).reshape(-1)
    num_positions, vocab_size = logits.shape
    if targets.shape[0] != num_positions:
        raise ValueError(f"{targets.shape[0]} target ids for {num_positions} logits rows")
    if num_positions and (int(targets.min()) < 0 or int(targets.max()) >= vocab_size):
        raise ValueError("prompt token id outside the vocabulary")
    k = max(0, min(int(k), vocab_size))
    result: list[dict[int, float]] = []
    for start in range(0, num_positions, _PROMPT_CHUNK):
        chunk = logits[start : start + _PROMPT_CHUNK].float()  # [c, V]
        chunk_targets = targets[start : start + _PROMPT_CHUNK]
        lse = torch.logsumexp(chunk, dim=-1, keepdim=True)  # [c, 1]
        target_lp = (chunk.gather(1, chunk_targets[:, None]) - lse).squeeze(1).tolist()
        top_lp: list[list[float]] = [[] for _ in target_lp]
        top_ids: list[list[int]] = [[] for _ in target_lp]
        if k:
            values, indices = chunk.topk(k, dim=-1)
            top_lp, top_ids = (values - lse).tolist(), indices.tolist()
        for target, lp, ids, lps in zip(chunk_targets.tolist(), target_lp, top_ids, top_lp):
            entry = {target: lp}
            for token, token_lp in zip(ids, lps):
                entry.setdefault(token, token_lp)
            result.append(entry)
    return result


# --- logits for a group of rows -------------------------------------------------------------------------------


def _group_logits(logits: torch.Tensor, rows: list[SamplingRow], group: list[int]) -> torch.Tensor:
    """The processed logits of `group`'s rows [g, V]; the caller's tensor itself when nothing changes it."""
    processed = [j for j, i in enumerate(group) if needs_processing(rows[i])]
    # Groups are built in row order, so a contiguous run is a slice: a view, copied only when processed.
    contiguous = group == list(range(group[0], group[0] + len(group)))
    if contiguous:
        sub = logits[group[0] : group[0] + len(group)]
        if not processed:
            return sub
        sub = sub.clone()
    else:
        sub = logits.index_select(0, torch.tensor(group, device=logits.device))
    for j in processed:
        process_row(sub[j], logits[group[j]], rows[group[j]])
    return sub


def _column(rows: list[SamplingRow], name: str, device: torch.device) -> torch.Tensor:
    return torch.tensor([[float(getattr(row.params, name))] for row in rows], device=device)  # [g, 1]


def _uniforms(rows: list[SamplingRow], device: torch.device) -> torch.Tensor:
    """One U[0, 1) per row: from the row's own generator when seeded, else from torch's global generator."""
    values = torch.rand(len(rows), device=device)
    for j, row in enumerate(rows):
        if row.generator is not None:
            values[j] = float(torch.rand(1, generator=row.generator, device=row.generator.device))
    return values  # [g]


# --- selection -------------------------------------------------------------------------------------------------


def _sample_top_k(work: torch.Tensor, top_k: int, rows: list[SamplingRow]) -> list[int]:
    """Rows sharing one top_k: topk first, then temperature, min_p and top_p on the k candidates only."""
    values, ids = _canonical(*work.topk(top_k, dim=-1))  # [g, k], descending
    shifted = (values - values[:, :1]) / _column(rows, "temperature", work.device)  # <= 0, max at column 0
    weights = _min_p_weights(shifted, rows)
    weights = _top_p_filter(weights, weights.sum(dim=-1, keepdim=True), rows)
    choice = _inverse_cdf(weights, _uniforms(rows, work.device))
    return ids.gather(1, choice[:, None]).squeeze(1).tolist()


def _sample_full(logits: torch.Tensor, rows: list[SamplingRow], group: list[int]) -> list[int]:
    """Rows without top_k: the whole vocabulary, sorted only for top_p (and only as far as needed)."""
    chosen: dict[int, int] = {}
    plain = [i for i in group if rows[i].params.top_p >= 1.0]
    nucleus = [i for i in group if rows[i].params.top_p < 1.0]
    for subset, with_top_p in ((plain, False), (nucleus, True)):
        if not subset:
            continue
        sub_rows = [rows[i] for i in subset]
        work = _group_logits(logits, rows, subset)  # [g, V]
        shifted = work - work.max(dim=-1, keepdim=True).values  # fresh [g, V]: the in-place steps below are safe
        shifted.div_(_column(sub_rows, "temperature", work.device))
        # Only the nucleus needs `shifted` afterwards; otherwise reuse its memory (V-sized temporaries dominate).
        weights = _min_p_weights(shifted, sub_rows, in_place=not with_top_p)  # [g, V], token-id order
        uniforms = _uniforms(sub_rows, work.device)
        if with_top_p:
            tokens = _sample_nucleus(shifted, weights, sub_rows, uniforms)
        else:
            tokens = _inverse_cdf(weights, uniforms).tolist()
        chosen.update(zip(subset, tokens))
    return [chosen[i] for i in group]


def _sample_nucleus(
    shifted: torch.Tensor, weights: torch.Tensor, rows: list[SamplingRow], uniforms: torch.Tensor
) -> list[int]:
    """top_p over the full vocabulary without a full sort.

    Peaked rows (the usual case for a trained model): the top 1,024 tokens already hold top_p of the mass, so the
    nucleus is found inside them. Flat rows: a mass histogram over the shifted logits locates the bucket where the
    cumulative mass crosses top_p, and only that bucket is sorted.
    """
    total = weights.sum(dim=-1, keepdim=True)  # [g, 1]
    probe = min(_TOP_P_PROBE, weights.shape[1])
    values, ids = _canonical(*weights.topk(probe, dim=-1))
    top_p = torch.tensor([row.params.top_p for row in rows], device=weights.device)
    covered = (values.sum(dim=-1) / total.squeeze(1) >= top_p).tolist()
    tokens: list[int] = [0] * len(rows)
    for flag in (True, False):
        part = [j for j, c in enumerate(covered) if c == flag]
        if not part:
            continue
        index = torch.tensor(part, device=weights.device)
        part_rows = [rows[j] for j in part]
        if flag:
            part_values = _top_p_filter(values[index], total[index], part_rows)
            choice = _inverse_cdf(part_values, uniforms[index])
            chosen = ids[index].gather(1, choice[:, None]).squeeze(1).tolist()
        elif len(part) == len(rows):  # the common all-flat case: no row copies
            kept = _nucleus_by_histogram(shifted, weights, total, top_p)
            chosen = _inverse_cdf(kept, uniforms).tolist()
        else:
            kept = _nucleus_by_histogram(
                shifted.index_select(0, index), weights.index_select(0, index), total[index], top_p[index]
            )
            chosen = _inverse_cdf(kept, uniforms[index]).tolist()  # token-id order: canonical
        for j, token in zip(part, chosen):
            tokens[j] = token
    return tokens


def _nucleus_by_histogram(
    shifted: torch.Tensor, weights: torch.Tensor, total: torch.Tensor, top_p: torch.Tensor
) -> torch.Tensor:
    """`weights` [r, V] with tokens outside the top_p nucleus zeroed (ties at the cut-off are all kept)."""
    num_buckets = _HISTOGRAM_BUCKETS
    # Bucket j holds shifted logits in (-(j+1)w, -jw]; exp underflows to 0 below about -88, where the last
    # bucket collects the rest. A higher bucket therefore only holds strictly smaller values.
    bucket = (shifted * (-num_buckets / 90.0)).clamp_(0, num_buckets - 1)
    bucket = torch.nan_to_num_(bucket, nan=float(num_buckets - 1)).long()  # [r, V]
    mass = torch.zeros(shifted.shape[0], num_buckets, device=shifted.device).scatter_add_(1, bucket, weights)
    cumulative = mass.cumsum(dim=1)
    target = top_p[:, None] * total  # [r, 1]
    # First bucket whose cumulative mass reaches the target: everything before it is kept, everything after dropped.
    boundary = (cumulative < target).sum(dim=1, keepdim=True).clamp_(max=num_buckets - 1)  # [r, 1]
    before = (cumulative.gather(1, boundary) - mass.gather(1, boundary)).squeeze(1).tolist()
    cutoffs = []
    for j, boundary_bucket in enumerate(boundary.squeeze(1).tolist()):
        members = weights[j][bucket[j] == boundary_bucket].sort(descending=True).values
        preceding = before[j] + members.cumsum(0) - members
        kept = members[preceding < float(target[j])]
        cutoffs.append(float(kept[-1]) if kept.numel() else float(members[0]) if members.numel() else 0.0)
    cutoff = torch.tensor(cutoffs, device=weights.device)[:, None]
    return weights.masked_fill((bucket > boundary) | (weights < cutoff), 0.0)


def _canonical(values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorder candidates to (value descending, id ascending): topk's tie order is not a contract."""
    by_id = ids.argsort(dim=-1)
    values, ids = values.gather(-1, by_id), ids.gather(-1, by_id)
    by_value = values.argsort(dim=-1, descending=True, stable=True)
    return values.gather(-1, by_value), ids.gather(-1, by_value)


def _min_p_weights(shifted: torch.Tensor, rows: list[SamplingRow], in_place: bool = False) -> torch.Tensor:
    """exp of max-shifted tempered logits, with tokens below min_p * p_max zeroed (p_i/p_max = exp(shifted_i))."""
    if any(row.params.min_p > 0.0 for row in rows):
        # log(0) = -inf keeps every token of rows without min_p; the clamp keeps the max even for min_p > 1.
        threshold = torch.log(_column(rows, "min_p", shifted.device)).clamp_(max=0.0)
        below = shifted < threshold
        shifted = shifted.masked_fill_(below, float("-inf")) if in_place else shifted.masked_fill(below, float("-inf"))
    return shifted.exp_() if in_place else shifted.exp()


def _top_p_filter(weights: torch.Tensor, total: torch.Tensor, rows: list[SamplingRow]) -> torch.Tensor:
    """Zero candidates (sorted descending) whose preceding mass already reaches top_p (HF / vLLM rule)."""
    if all(row.params.top_p >= 1.0 for row in rows):
        return weights
    probs = weights / total
    preceding = probs.cumsum(dim=-1) - probs
    top_p = _column(rows, "top_p", weights.device)
    # The first candidate always survives (preceding = 0 < top_p); rows with top_p = 1 are left untouched so
    # cumsum rounding never drops their tail.
    return weights.masked_fill((preceding >= top_p) & (top_p < 1.0), 0.0)


def _inverse_cdf(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Index drawn with probability proportional to `weights` [g, K] using one uniform per row -> [g]."""
    cumulative = weights.cumsum(dim=-1)
    target = uniforms[:, None] * cumulative[:, -1:]
    index = torch.searchsorted(cumulative, target, right=True).clamp_(max=weights.shape[1] - 1)
    # Rounding can land on a zero-weight slot (target == total); take the most likely candidate instead.
    empty = weights.gather(1, index) <= 0
    if bool(empty.any()):
        index = torch.where(empty, weights.argmax(dim=-1, keepdim=True), index)
    return index.squeeze(1)


# --- reported logprobs -----------------------------------------------------------------------------------------


def _logprobs(logits: torch.Tensor, rows: list[SamplingRow], token_ids: list[int]) -> list[dict[int, float] | None]:
    """Raw log_softmax of the sampled token and of the row's top `params.logprobs` tokens."""
    result: list[dict[int, float] | None] = [None] * len(rows)
    asked = [i for i, row in enumerate(rows) if row.params.logprobs is not None]
    if not asked:
        return result
    vocab_size = logits.shape[1]
    raw = logits if len(asked) == logits.shape[0] else logits.index_select(0, torch.tensor(asked, device=logits.device))
    lse = torch.logsumexp(raw, dim=-1, keepdim=True)  # [a, 1]
    sampled = torch.tensor([[token_ids[i]] for i in asked], device=logits.device)
    sampled_lp = (raw.gather(1, sampled) - lse).squeeze(1).tolist()
    counts = [max(0, min(int(rows[i].params.logprobs or 0), vocab_size)) for i in asked]
    top_ids: list[list[int]] = [[] for _ in asked]
    top_lp: list[list[float]] = [[] for _ in asked]
    if max(counts):
        values, indices = raw.topk(max(counts), dim=-1)
        top_lp, top_ids = (values - lse).tolist(), indices.tolist()
    for j, i in enumerate(asked):
        entry = {token_ids[i]: sampled_lp[j]}
        for token, lp in zip(top_ids[j][: counts[j]], top_lp[j][: counts[j]]):
            entry.setdefault(token, lp)
        result[i] = entry
    return result
