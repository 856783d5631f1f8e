"""Sampler: greedy, seeded reproducibility, each control's effect against an independent reference, logprobs."""

from __future__ import annotations

import math

import pytest
import torch

from qwen35.engine.penalties import process_row
from qwen35.engine.request import SamplingParams
from qwen35.engine.sampler import SamplingRow, make_generator, prompt_logprobs, sample


def _row(params: SamplingParams, **kwargs: object) -> SamplingRow:
    kwargs.setdefault("prompt_token_ids", [])
    kwargs.setdefault("output_token_ids", [])
    kwargs.setdefault("generator", None)
    return SamplingRow(params=params, **kwargs)  # type: ignore[arg-type]


def _reference_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Straight-line vLLM semantics on one row [V] (float64): temperature, min_p, top_k, then top_p."""
    probs = torch.softmax(logits.double() / params.temperature, dim=-1)
    probs = torch.where(probs < params.min_p * probs.max(), 0.0, probs)
    if 0 < params.top_k < probs.numel():
        kth = probs.sort(descending=True).values[params.top_k - 1]
        probs = torch.where(probs < kth, 0.0, probs)
    probs = probs / probs.sum()
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        preceding = sorted_probs.cumsum(0) - sorted_probs
        sorted_probs = torch.where(preceding >= params.top_p, 0.0, sorted_probs)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        probs = probs / probs.sum()
    return probs


def _empirical(
    logits: torch.Tensor, params: SamplingParams, num_draws: int = 20000, **row_kwargs: object
) -> torch.Tensor:
    """Frequencies of `num_draws` unseeded samples of one row [V], drawn as one batch (the vectorised path)."""
    torch.manual_seed(1234)
    rows = [_row(params, **row_kwargs) for _ in range(num_draws)]
    tokens = sample(logits.expand(num_draws, -1).contiguous(), rows).token_ids
    return torch.bincount(torch.tensor(tokens), minlength=logits.numel()).double() / num_draws


def _total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


@pytest.fixture
def logits10() -> torch.Tensor:
    return torch.randn(10, generator=torch.Generator().manual_seed(7)) * 1.5


def test_greedy_is_argmax_and_first_on_ties() -> None:
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(0))
    logits[5, 10] = logits[5, 20] = logits[5].max() + 1.0
    rows = [_row(SamplingParams(temperature=0.0)) for _ in range(6)]
    assert sample(logits, rows).token_ids == logits.argmax(dim=-1).tolist()
    assert sample(logits, rows).token_ids[5] == 10
    # Temperatures too small to divide by are greedy too (vLLM's epsilon).
    tiny = [_row(SamplingParams(temperature=1e-7)) for _ in range(6)]
    assert sample(logits, tiny).token_ids == logits.argmax(-1).tolist()


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(seed=3, top_k=20),
        SamplingParams(seed=3, temperature=0.7),
        SamplingParams(seed=3, top_p=0.9, min_p=0.01),
        SamplingParams(seed=3, top_p=0.999),  # nucleus wider than the probe: full sort
        SamplingParams(seed=3, top_p=0.9, temperature=0.2),  # nucleus inside the probe
        SamplingParams(seed=3, top_k=50, top_p=0.8, presence_penalty=0.5),
    ],
)
def test_seeded_reproducible_and_independent_of_batch(params: SamplingParams) -> None:
    vocab = 4000
    steps = [torch.randn(vocab, generator=torch.Generator().manual_seed(s)) for s in range(8)]

    def run(neighbours: int, sample_index: int) -> list[int]:
        generator = make_generator(params.seed or 0, sample_index)
        torch.manual_seed(99 + neighbours)  # the unseeded neighbours draw from a different global state
        out: list[int] = []
        for step_logits in steps:
            others = [
                _row(SamplingParams(top_k=k, top_p=0.95), generator=make_generator(11, k) if k % 2 else None)
                for k in range(1, neighbours + 1)
            ]
            target = _row(params, prompt_token_ids=[1, 2, 3], output_token_ids=list(out), generator=generator)
            batch = others[: neighbours // 2] + [target] + others[neighbours // 2 :]
            before, after = torch.randn(neighbours // 2, vocab), torch.randn(neighbours - neighbours // 2, vocab)
            logits = torch.cat([before, step_logits[None], after])
            out.append(sample(logits, batch).token_ids[neighbours // 2])
        return out

    alone = run(0, 0)
    assert run(0, 0) == alone
    assert run(5, 0) == alone
    assert run(12, 0) == alone
    assert run(0, 1) != alone  # sample index 1 of n draws its own stream


def test_generator_per_sample_follows_vllm_seed_plus_index() -> None:
    first = torch.rand(4, generator=make_generator(41, 1))
    assert torch.equal(first, torch.rand(4, generator=make_generator(42, 0)))
    assert not torch.equal(first, torch.rand(4, generator=make_generator(41, 0)))
    make_generator(2**63 - 1, 127)  # the largest valid seed and n do not overflow


def test_seeded_draws_follow_the_distribution(logits10: torch.Tensor) -> None:
    params = SamplingParams(seed=5, temperature=0.8)
    generator = make_generator(5, 0)
    tokens = [sample(logits10[None], [_row(params, generator=generator)]).token_ids[0] for _ in range(3000)]
    freq = torch.bincount(torch.tensor(tokens), minlength=10).double() / 3000
    assert _total_variation(freq, _reference_probs(logits10, params)) < 0.04


@pytest.mark.parametrize("temperature", [0.3, 1.0, 1.8])
def test_temperature_matches_softmax_and_spreads(logits10: torch.Tensor, temperature: float) -> None:
    params = SamplingParams(temperature=temperature)
    freq = _empirical(logits10, params)
    assert _total_variation(freq, _reference_probs(logits10, params)) < 0.02


def test_higher_temperature_has_higher_entropy(logits10: torch.Tensor) -> None:
    def entropy(p: torch.Tensor) -> float:
        p = p[p > 0]
        return float(-(p * p.log()).sum())

    cold = _empirical(logits10, SamplingParams(temperature=0.3))
    warm = _empirical(logits10, SamplingParams(temperature=1.8))
    assert entropy(warm) > entropy(cold) + 0.3


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(top_k=3),
        SamplingParams(top_k=1, temperature=1.5),
        SamplingParams(top_p=0.6),
        SamplingParams(top_k=5, top_p=0.7, temperature=0.9),
        SamplingParams(min_p=0.2),
        SamplingParams(min_p=0.3, top_k=6, top_p=0.95, temperature=1.3),
        SamplingParams(top_k=10_000_000),  # larger than the vocabulary: disabled
    ],
)
def test_truncation_controls_match_reference(logits10: torch.Tensor, params: SamplingParams) -> None:
    expected = _reference_probs(logits10, params)
    freq = _empirical(logits10, params)
    assert set(freq.nonzero().flatten().tolist()) <= set(expected.nonzero().flatten().tolist())
    assert _total_variation(freq, expected) < 0.02


def test_top_p_without_top_k_on_wide_and_narrow_nuclei() -> None:
    vocab = 3000
    flat = torch.randn(vocab, generator=torch.Generator().manual_seed(3)) * 0.1  # nucleus > probe: full sort
    peaked = flat.clone()
    peaked[:50] += 12.0  # nucleus inside the probe
    for logits, top_p in ((flat, 0.5), (peaked, 0.9)):
        params = SamplingParams(top_p=top_p)
        expected = _reference_probs(logits, params)
        freq = _empirical(logits, params, num_draws=1500)
        assert set(freq.nonzero().flatten().tolist()) <= set(expected.nonzero().flatten().tolist())
        # Draws spread over the nucleus (not collapsed onto the probe or the top token).
        assert int((freq > 0).sum()) > min(500, int((expected > 0).sum()) // 2)
    assert int((_reference_probs(flat, SamplingParams(top_p=0.5)) > 0).sum()) > 1024


def test_penalties_follow_the_formulas() -> None:
    raw = torch.tensor([2.0, -1.0, 0.5, 3.0, -2.0, 1.0])
    prompt, output = [0, 1], [2, 2, 2, 4]
    params = SamplingParams(repetition_penalty=1.5, frequency_penalty=0.4, presence_penalty=0.3)
    out = raw.clone()
    process_row(out, raw, _row(params, prompt_token_ids=prompt, output_token_ids=output))
    expected = raw.clone()
    for token in set(prompt) | set(output):  # repetition: prompt and output, sign-aware (HF / vLLM)
        expected[token] = expected[token] / 1.5 if expected[token] > 0 else expected[token] * 1.5
    for token in set(output):  # OpenAI: frequency * count + presence * [count > 0], output tokens only
        expected[token] -= 0.4 * output.count(token) + 0.3
    torch.testing.assert_close(out, expected)


def test_penalties_change_what_is_sampled() -> None:
    logits = torch.tensor([3.0, 2.9, 0.0, 0.0])
    greedy = SamplingParams(temperature=0.0)
    assert sample(logits[None], [_row(greedy, output_token_ids=[0])]).token_ids == [0]
    for params in (
        SamplingParams(temperature=0.0, presence_penalty=0.5),
        SamplingParams(temperature=0.0, frequency_penalty=0.2),
        SamplingParams(temperature=0.0, repetition_penalty=1.2),
    ):
        assert sample(logits[None], [_row(params, output_token_ids=[0])]).token_ids == [1]
    # Repetition penalty also counts prompt tokens; frequency/presence do not.
    repetition = _row(SamplingParams(temperature=0.0, repetition_penalty=1.2), prompt_token_ids=[0])
    presence = _row(SamplingParams(temperature=0.0, presence_penalty=2.0), prompt_token_ids=[0])
    assert sample(logits[None], [repetition]).token_ids == [1]
    assert sample(logits[None], [presence]).token_ids == [0]
    # A negative frequency penalty encourages repetition: the distribution shifts toward the repeated token.
    params = SamplingParams(frequency_penalty=-1.0)
    freq = _empirical(logits, params, num_draws=5000, output_token_ids=[1, 1])
    expected = torch.softmax(logits.double() + torch.tensor([0.0, 2.0, 0.0, 0.0]), dim=-1)
    assert _total_variation(freq, expected) < 0.02


def test_logit_bias_forces_and_bans(logits10: torch.Tensor) -> None:
    low = int(logits10.argmin())
    high = int(logits10.argmax())
    forced = _empirical(logits10, SamplingParams(logit_bias={low: 100.0}), num_draws=500)
    assert forced[low] == 1.0
    banned = _empirical(logits10, SamplingParams(logit_bias={high: -100.0}), num_draws=2000)
    assert banned[high] == 0.0
    # Ids outside the vocabulary are ignored, never an index error.
    outside = _row(SamplingParams(temperature=0.0, logit_bias={10**9: 5.0, -3: 1.0}))
    assert sample(logits10[None], [outside]).token_ids == [high]


def test_banned_ids_and_allowed_mask(logits10: torch.Tensor) -> None:
    top3 = logits10.topk(3).indices.tolist()
    freq = _empirical(logits10, SamplingParams(), num_draws=3000, banned_token_ids=top3)
    assert float(freq[top3].sum()) == 0.0
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 4]] = True
    freq = _empirical(logits10, SamplingParams(temperature=1.5), num_draws=3000, allowed_mask=mask)
    assert set(freq.nonzero().flatten().tolist()) == {1, 4}
    # A grammar mask sized to the tokenizer (shorter than the padded model vocab) disallows the padding ids.
    short = torch.ones(8, dtype=torch.bool)
    padded = logits10 + torch.tensor([0.0] * 8 + [50.0, 50.0])
    freq = _empirical(padded, SamplingParams(), num_draws=500, allowed_mask=short)
    assert float(freq[8:].sum()) == 0.0


def test_fallbacks_when_nothing_is_allowed(logits10: torch.Tensor) -> None:
    only_eos = torch.zeros(10, dtype=torch.bool)
    only_eos[9] = True
    # Grammar finished (only EOS allowed) while min_tokens bans EOS: the grammar wins.
    row = _row(SamplingParams(), allowed_mask=only_eos, banned_token_ids=[9])
    assert sample(logits10[None], [row]).token_ids == [9]
    # A mask that allows nothing (a grammar bug) falls back to the unconstrained row instead of NaN.
    row = _row(SamplingParams(temperature=0.0), allowed_mask=torch.zeros(10, dtype=torch.bool))
    assert sample(logits10[None], [row]).token_ids == [int(logits10.argmax())]
    # An all -inf row from the model still yields an id in range.
    dead = torch.full((2, 10), float("-inf"))
    seeded = _row(SamplingParams(top_p=0.5, seed=1), generator=make_generator(1, 0))
    tokens = sample(dead, [_row(SamplingParams()), seeded]).token_ids
    assert all(0 <= t < 10 for t in tokens)


def test_extreme_but_valid_params_do_not_crash(logits10: torch.Tensor) -> None:
    rows = [
        _row(SamplingParams(repetition_penalty=1e-30, temperature=2.0), prompt_token_ids=list(range(10))),
        _row(
            SamplingParams(repetition_penalty=2.0, frequency_penalty=-2.0, presence_penalty=-2.0),
            output_token_ids=[3] * 5000,
        ),
        _row(SamplingParams(min_p=1.0, top_p=1e-9, top_k=1)),
        _row(SamplingParams(temperature=2.0, top_p=1e-9, min_p=1.0)),
        _row(SamplingParams(temperature=1e-5, logprobs=20, top_k=-1)),
        _row(SamplingParams(logit_bias={i: -100.0 for i in range(10)}, logprobs=0)),
    ]
    out = sample(logits10.expand(len(rows), -1), rows)
    assert all(0 <= t < 10 for t in out.token_ids)
    assert out.token_ids[2] == out.token_ids[3] == int(logits10.argmax())  # min_p=1 keeps only the max
    assert out.token_ids[1] == 3
    assert len(out.logprobs[4] or {}) == 10  # logprobs=20 on a 10-token vocabulary: all of them


def test_forced_token_reported_with_raw_logprobs(logits10: torch.Tensor) -> None:
    generator = make_generator(8, 0)
    state = generator.get_state()
    lowest = int(logits10.argmin())
    row = _row(
        SamplingParams(seed=8, logprobs=2), generator=generator, forced_token_id=lowest, banned_token_ids=[lowest]
    )
    out = sample(logits10[None], [row])
    assert out.token_ids == [int(logits10.argmin())]
    raw = torch.log_softmax(logits10, dim=-1)
    assert out.logprobs[0] is not None and len(out.logprobs[0]) == 3
    assert math.isclose(out.logprobs[0][int(logits10.argmin())], float(raw.min()), abs_tol=1e-5)
    assert torch.equal(generator.get_state(), state)  # a forced step consumes no randomness
    with pytest.raises(ValueError):
        sample(logits10[None], [_row(SamplingParams(), forced_token_id=10)])


def test_logprobs_are_the_raw_distribution() -> None:
    logits = torch.randn(4, 500, generator=torch.Generator().manual_seed(1)) * 3
    rows = [
        _row(SamplingParams(temperature=0.5, top_k=5, logprobs=5, repetition_penalty=1.3), prompt_token_ids=[1, 2]),
        _row(SamplingParams(logprobs=0, presence_penalty=1.0), output_token_ids=[7]),
        _row(SamplingParams()),
        _row(SamplingParams(temperature=0.0, logprobs=3, logit_bias={int(logits[3].argmin()): 100.0})),
    ]
    out = sample(logits, rows)
    raw = torch.log_softmax(logits, dim=-1)
    assert out.logprobs[2] is None
    assert list(out.logprobs[1] or {}) == [out.token_ids[1]]
    for i, count in ((0, 5), (3, 3)):
        entry = out.logprobs[i]
        assert entry is not None
        top = raw[i].topk(count).indices.tolist()
        assert set(entry) == set(top) | {out.token_ids[i]}
        assert next(iter(entry)) == out.token_ids[i]  # the sampled token comes first
        for token, lp in entry.items():
            assert math.isclose(lp, float(raw[i, token]), abs_tol=1e-5)
    assert out.token_ids[3] == int(logits[3].argmin())
    assert len(out.logprobs[3] or {}) == 4  # biased pick is outside the raw top 3


def test_prompt_logprobs_match_log_softmax() -> None:
    logits = torch.randn(300, 50, generator=torch.Generator().manual_seed(2))  # more rows than one chunk
    targets = torch.randint(0, 50, (300,), generator=torch.Generator().manual_seed(3))
    raw = torch.log_softmax(logits, dim=-1)
    result = prompt_logprobs(logits, targets, 4)
    assert len(result) == 300
    for t in (0, 131, 299):
        entry = result[t]
        assert next(iter(entry)) == int(targets[t])
        assert set(entry) == set(raw[t].topk(4).indices.tolist()) | {int(targets[t])}
        for token, lp in entry.items():
            assert math.isclose(lp, float(raw[t, token]), abs_tol=1e-5)
    assert [list(e) for e in prompt_logprobs(logits[:3], targets[:3], 0)] == [[int(x)] for x in targets[:3]]
    with pytest.raises(ValueError):
        prompt_logprobs(logits[:2], torch.tensor([1, 50]), 1)


def test_unvalidated_params_still_do_not_crash(logits10: torch.Tensor) -> None:
    """The engine validates params, but the sampler must survive what slips through (the decode loop is shared)."""
    odd = SamplingParams()  # frozen: out-of-range values forced in the way a missed validation would leave them
    for name, value in (("min_p", 1.5), ("top_p", 0.0), ("top_k", -7), ("logprobs", 10**6)):
        object.__setattr__(odd, name, value)
    rows = [_row(odd), _row(odd, generator=make_generator(0, 0))]
    out = sample(logits10.expand(2, -1), rows)
    assert out.token_ids == [int(logits10.argmax())] * 2
    assert len(out.logprobs[0] or {}) == 10
    assert sample(torch.zeros(0, 10), []).token_ids == []


def test_bad_shapes_raise_typed_errors() -> None:
    with pytest.raises(ValueError):
        sample(torch.zeros(2, 5), [_row(SamplingParams())])
    with pytest.raises(ValueError):
        sample(torch.zeros(5), [_row(SamplingParams())])


def test_full_vocabulary_mixed_batch() -> None:
    vocab = 248_320
    logits = torch.randn(5, vocab, generator=torch.Generator().manual_seed(4)) * 4
    rows = [
        _row(SamplingParams(temperature=0.0, logprobs=20)),
        _row(SamplingParams(top_k=20, top_p=0.95, seed=1), generator=make_generator(1, 0)),
        _row(SamplingParams(top_p=0.9)),
        _row(SamplingParams(min_p=0.05, presence_penalty=0.5), output_token_ids=[5, 6]),
        _row(SamplingParams(), forced_token_id=vocab - 1, allowed_mask=torch.ones(vocab - 100, dtype=torch.bool)),
    ]
    before = logits.clone()
    out = sample(logits, rows)
    assert torch.equal(logits, before)  # the caller's logits are never modified
    assert out.token_ids[0] == int(logits[0].argmax())
    assert out.token_ids[1] in logits[1].topk(20).indices.tolist()
    assert out.token_ids[4] == vocab - 1
    assert len(out.logprobs[0] or {}) == 20
    assert all(0 <= t < vocab for t in out.token_ids)


@pytest.mark.parametrize("scale", [0.05, 1.0, 4.0])
@pytest.mark.parametrize("top_p", [0.3, 0.9])
def test_histogram_nucleus_equals_sorted_nucleus(scale: float, top_p: float) -> None:
    from qwen35.engine.sampler import _nucleus_by_histogram

    logits = torch.randn(2, 20_000, generator=torch.Generator().manual_seed(5)) * scale
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    weights = shifted.exp()
    kept = _nucleus_by_histogram(shifted, weights, weights.sum(-1, keepdim=True), torch.tensor([top_p, top_p]))
    for r in range(2):
        expected = _reference_probs(logits[r], SamplingParams(top_p=top_p)) > 0
        got = kept[r] > 0
        assert int((got ^ expected).sum()) <= 1  # float32 vs float64 rounding may move the edge by one token
        assert torch.equal(kept[r][got], weights[r][got])  # kept tokens keep their weight
