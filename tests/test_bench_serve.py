"""`qwen35 bench serve` against a real `qwen35 serve` child on the tiny checkpoint (loopback only): every request
succeeds, ignore_eos makes exactly num_prompts x output_len tokens, percentiles are ordered; plus the pure parts
(percentiles, prompt lengths, metrics of given outcomes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qwen35.bench_client import RequestOutcome
from qwen35.bench_serve import collect, percentile, random_prompts
from qwen35.cli import main
from qwen35.processor.tokenizer import load_tokenizer
from serve_process import Serve


def test_percentile_is_numpys_linear_interpolation() -> None:
    values = [5.0, 1.0, 9.5, 3.25, 7.0, 2.0, 8.0]
    for q in (0, 25, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([], 50) == 0.0


@pytest.mark.parametrize("words", [False, True])
def test_random_prompts_have_the_asked_length_and_no_control_tokens(words: bool) -> None:
    tokenizer = load_tokenizer(None)
    prompts = random_prompts(tokenizer, 4, 40, seed=3, words=words)
    assert [p.num_tokens for p in prompts] == [40] * 4
    assert len({p.text for p in prompts}) == 4
    for p in prompts:
        ids = tokenizer.encode_plain(p.text)
        assert len(ids) == 40 and not set(ids) & tokenizer.added_token_ids
    assert random_prompts(tokenizer, 4, 40, seed=3, words=words) == prompts  # seeded


def test_collect_counts_only_successes_and_derives_tpot() -> None:
    outcomes = [
        RequestOutcome(True, prompt_tokens=10, output_tokens=5, ttft_s=0.1, latency_s=0.5, itl_s=(0.1,) * 4),
        RequestOutcome(True, prompt_tokens=12, output_tokens=1, ttft_s=0.2, latency_s=0.2),
        RequestOutcome(False, error="HTTP 429: slow down"),
    ]
    m = collect(outcomes, 2.0)
    assert (m["successful"], m["failed"], m["total_input_tokens"], m["total_output_tokens"]) == (2, 1, 22, 6)
    assert m["output_throughput"] == pytest.approx(3.0) and m["request_throughput"] == pytest.approx(1.0)
    assert m["tpot"].mean == pytest.approx(100.0)  # (0.5 - 0.1) / 4 s, the one-token answer has no TPOT
    assert m["ttft"].mean == pytest.approx(150.0) and m["errors"] == ["HTTP 429: slow down"]


def _secret(lines: list[str]) -> str:
    return next(line.strip() for line in lines if line.strip().startswith("sk-"))


@pytest.mark.slow  # ~10 s: a real server child starts once for both endpoints
def test_bench_serve_against_a_real_server(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    server = Serve(tiny_checkpoint, tmp_path / "store")
    try:
        secret = _secret(server.lines)
        results = {}
        for endpoint, shape in (("chat", ["--max-concurrency", "3"]), ("completions", ["--request-rate", "200"])):
            out = tmp_path / f"{endpoint}.json"
            code = main(["bench", "serve", "--base-url", server.base_url, "--api-key", secret, "--endpoint", endpoint,
                         "--tokenizer", str(tiny_checkpoint), "--num-prompts", "6", "--input-len", "24",
                         "--output-len", "5", "--disable-tqdm", "--out", str(out), *shape])
            assert code == 0
            results[endpoint] = json.loads(out.read_text())
        printed = capsys.readouterr().out
        assert "| TTFT |" in printed and "commit `" in printed and "machine (client)" in printed
    finally:
        server.stop()
    prompt_tokens = sum(p.num_tokens for p in random_prompts(load_tokenizer(tiny_checkpoint), 6, 24, seed=0))
    for endpoint, r in results.items():
        assert (r["successful"], r["failed"]) == (6, 0), r["errors"]
        assert r["total_output_tokens"] == 6 * 5  # ignore_eos: exactly output_len each
        assert r["output_throughput"] == pytest.approx(r["total_output_tokens"] / r["duration_s"])
        for name in ("ttft", "tpot", "itl", "e2e"):
            stat = r[name]
            assert 0 < stat["median"] <= stat["p99"], (endpoint, name, stat)
        assert r["ttft"]["mean"] <= r["e2e"]["mean"]
    assert results["completions"]["total_input_tokens"] == prompt_tokens  # a raw prompt: its own tokens only
    assert results["chat"]["total_input_tokens"] > prompt_tokens  # plus the chat template's
    assert results["completions"]["request_rate"] == 200 and results["chat"]["max_concurrency"] == 3
