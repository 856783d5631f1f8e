"""Stop strings: earliest match across arbitrary chunking, minimal hold-back."""

from __future__ import annotations

import random

import pytest

from qwen35.processor.stop import StopMatcher


def _run(stops: list[str], chunks: list[str]) -> tuple[str, str | None]:
    matcher = StopMatcher(stops)
    out = []
    for chunk in chunks:
        text, stop = matcher.feed(chunk)
        out.append(text)
        if stop is not None:
            return "".join(out), stop
    out.append(matcher.flush())
    return "".join(out), matcher.matched


def _reference(stops: list[str], text: str) -> tuple[str, str | None]:
    hits = [(text.find(s), -len(s), s) for s in stops if s and s in text]
    if not hits:
        return text, None
    at, _, stop = min(hits)
    return text[:at], stop


def _splits(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 6)))) if len(text) > 1 else []
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize(
    "stops, text",
    [
        (["END"], "hello END world"),
        (["\n\n"], "para one\n\npara two"),
        (["abc", "b"], "xxabcxx"),
        (["abc", "b"], "xxabxx"),
        (["abc", "b"], "xxab"),
        (["</s>", "STOP"], "no stop here at all </"),
        (["🙂"], "smile 🙂 there"),
        (["aa"], "aaaa"),
        (["xyz", "yz"], "wxyz"),
    ],
)
def test_every_two_way_split(stops: list[str], text: str) -> None:
    expected = _reference(stops, text)
    for cut in range(len(text) + 1):
        assert _run(stops, [text[:cut], text[cut:]]) == expected
    assert _run(stops, list(text)) == expected


def test_random_chunkings() -> None:
    rng = random.Random(2)
    for _ in range(500):
        stops = ["".join(rng.choice("ab") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 20)))
        assert _run(stops, _splits(text, rng) or [""]) == _reference(stops, text)


def test_holds_back_only_a_possible_prefix() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("hello ST") == ("hello ", None)
    assert matcher.feed("ART") == ("START", None)
    assert matcher.feed("and S") == ("and ", None)
    assert matcher.flush() == "S" and matcher.matched is None


def test_no_stops_passes_through_and_after_match_nothing() -> None:
    assert StopMatcher(None).feed("abc") == ("abc", None)
    assert StopMatcher([""]).feed("abc") == ("abc", None)
    matcher = StopMatcher(["x"])
    assert matcher.feed("axb") == ("a", "x")
    assert matcher.feed("more") == ("", "x") and matcher.flush() == ""
