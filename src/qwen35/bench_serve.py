"""`qwen35 bench serve`: a serving benchmark over HTTP against a running qwen35 server, in the style of
`vllm bench serve`.

Owns the random datasets (random token ids of the checkpoint's tokenizer decoded to text, or random whole words
from its vocabulary, re-encoded until each prompt is `--input-len` tokens), the traffic shape (Poisson arrivals at
`--request-rate`, default all at once, optionally capped by `--max-concurrency`), the metrics (request and token
throughput; TTFT, TPOT, ITL and end-to-end latency: mean, median, p99) and the report (Markdown or JSON, with
date, commit and machine). Requests are streamed OpenAI Chat Completions or legacy Completions with `ignore_eos`
(a qwen35 extension: every request makes exactly `--output-len` tokens) and thinking off. Imports no torch and no
engine; the HTTP client is `bench_client`. Invariant: token counts and throughputs are the server's usage numbers
over this run's wall time; only successful requests enter the latency statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qwen35.bench_client import HttpError, RequestOutcome, request_json, timed_request

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
ENDPOINT_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
_WORD = re.compile(r"^\u0120[A-Za-z]{3,}$")  # byte-level BPE: 'Ġword' is ' word'


@dataclass(frozen=True)
class Prompt:
    text: str
    num_tokens: int  # the tokenizer's count of `text` alone (no chat template)


@dataclass(frozen=True)
class Stat:
    """Milliseconds."""

    mean: float
    median: float
    p99: float


@dataclass(frozen=True)
class ServeBenchResult:
    date: str
    commit: str
    machine: str
    server: str
    endpoint: str
    model: str
    dataset: str
    num_prompts: int
    input_len: int
    output_len: int
    request_rate: float
    max_concurrency: int | None
    ignore_eos: bool
    thinking: bool
    successful: int
    failed: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float  # requests/s
    output_throughput: float  # tok/s
    total_throughput: float  # (input + output) tok/s
    ttft: Stat
    tpot: Stat
    itl: Stat
    e2e: Stat
    load_before: str
    load_after: str
    errors: list[str] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between closest ranks (numpy's default); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(seconds: Sequence[float]) -> Stat:
    ms = [1e3 * s for s in seconds]
    return Stat(mean=sum(ms) / len(ms) if ms else 0.0, median=percentile(ms, 50), p99=percentile(ms, 99))


def random_prompts(tokenizer: Any, num_prompts: int, input_len: int, seed: int, words: bool = False) -> list[Prompt]:
    """`num_prompts` texts of `input_len` tokens each (as far as re-encoding allows): random ordinary token ids
    (never a control token), or random whole words of the vocabulary, decoded to text."""
    added = tokenizer.added_token_ids
    pool = [i for i in range(len(tokenizer)) if i not in added]
    if words:
        pool = [i for i in pool if _WORD.match(tokenizer.id_to_token(i) or "")]
    rng = random.Random(seed)
    prompts: list[Prompt] = []
    for _ in range(num_prompts):
        ids = [rng.choice(pool) for _ in range(input_len)]
        text = tokenizer.decode(ids)
        for _ in range(10):  # decoding then encoding can merge or split tokens: top up or cut, then re-check
            again = tokenizer.encode_plain(text)
            if len(again) == input_len:
                break
            ids = again[:input_len] + [rng.choice(pool) for _ in range(input_len - len(again))]
            text = tokenizer.decode(ids)
        prompts.append(Prompt(text, len(tokenizer.encode_plain(text))))
    return prompts


def request_body(endpoint: str, model: str, prompt: str, output_len: int, ignore_eos: bool, thinking: bool,
                 temperature: float) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True},
                            "temperature": temperature, "ignore_eos": ignore_eos}
    if endpoint == "chat":
        body.update(messages=[{"role": "user", "content": prompt}], max_completion_tokens=output_len,
                    chat_template_kwargs={"enable_thinking": thinking})
    else:
        body.update(prompt=prompt, max_tokens=output_len)
    return body


async def _run_traffic(url: str, headers: dict[str, str], bodies: list[dict[str, Any]], request_rate: float,
                       max_concurrency: int | None, seed: int, timeout_s: float, progress: bool
                       ) -> tuple[list[RequestOutcome], float]:
    from tqdm import tqdm  # type: ignore[import-untyped]

    limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    bar = tqdm(total=len(bodies), desc="requests", unit="req", disable=not progress, file=sys.stderr)
    rng = random.Random(seed)

    async def one(body: dict[str, Any]) -> RequestOutcome:
        if limit is None:
            outcome = await timed_request(url, headers, body, timeout_s)
        else:
            async with limit:
                outcome = await timed_request(url, headers, body, timeout_s)
        bar.update(1)
        return outcome

    start = time.perf_counter()
    tasks: list[asyncio.Task[RequestOutcome]] = []
    for i, body in enumerate(bodies):
        if i and math.isfinite(request_rate):
            await asyncio.sleep(rng.expovariate(request_rate))  # Poisson arrivals
        tasks.append(asyncio.create_task(one(body)))
    outcomes = list(await asyncio.gather(*tasks))
    duration = time.perf_counter() - start
    bar.close()
    return outcomes, duration


def collect(outcomes: Sequence[RequestOutcome], duration_s: float) -> dict[str, Any]:
    """The metrics of a run: counts, throughputs and latency statistics of the successful requests."""
    ok = [o for o in outcomes if o.success]
    total_in = sum(o.prompt_tokens for o in ok)
    total_out = sum(o.output_tokens for o in ok)
    span = duration_s or float("inf")
    errors = list(dict.fromkeys(o.error for o in outcomes if not o.success))
    return {
        "successful": len(ok), "failed": len(outcomes) - len(ok), "duration_s": duration_s,
        "total_input_tokens": total_in, "total_output_tokens": total_out,
        "request_throughput": len(ok) / span, "output_throughput": total_out / span,
        "total_throughput": (total_in + total_out) / span,
        "ttft": summarize([o.ttft_s for o in ok]),
        "tpot": summarize([t for o in ok if (t := o.tpot_s) is not None]),
        "itl": summarize([gap for o in ok for gap in o.itl_s]),
        "e2e": summarize([o.latency_s for o in ok]), "errors": errors[:5],
    }


def to_markdown(r: ServeBenchResult) -> str:
    shape = f"request rate {r.request_rate:g}/s" if math.isfinite(r.request_rate) else "all requests at once"
    if r.max_concurrency:
        shape += f", at most {r.max_concurrency} in flight"
    lines = [
        f"## qwen35 bench serve: {r.endpoint} endpoint, {r.num_prompts} prompts",
        "",
        f"- date: {r.date}; commit `{r.commit}` (client, at start)",
        f"- machine (client): {r.machine}; load average before: {r.load_before}, after: {r.load_after}",
        f"- server: {r.server}",
        f"- traffic: {r.dataset} dataset, {r.input_len} input tokens (before the chat template), "
        f"{r.output_len} output tokens, ignore_eos {'on' if r.ignore_eos else 'off'}, thinking "
        f"{'on' if r.thinking else 'off'}, streamed; {shape}",
        "",
        "| metric | value |",
        "|---|---:|",
        f"| successful requests | {r.successful} |",
        f"| failed requests | {r.failed} |",
        f"| benchmark duration (s) | {r.duration_s:.2f} |",
        f"| total input tokens (server-counted) | {r.total_input_tokens} |",
        f"| total output tokens (server-counted) | {r.total_output_tokens} |",
        f"| request throughput (req/s) | {r.request_throughput:.3f} |",
        f"| output token throughput (tok/s) | {r.output_throughput:.2f} |",
        f"| total token throughput (tok/s) | {r.total_throughput:.2f} |",
        "",
        "| latency (ms) | mean | median | p99 |",
        "|---|---:|---:|---:|",
    ]
    for name, stat in (("TTFT", r.ttft), ("TPOT", r.tpot), ("ITL", r.itl), ("E2E", r.e2e)):
        lines.append(f"| {name} | {stat.mean:.1f} | {stat.median:.1f} | {stat.p99:.1f} |")
    if r.errors:
        lines += ["", "Errors (first distinct ones):", ""] + [f"- {e}" for e in r.errors]
    return "\n".join(lines)


async def _server_facts(base_url: str, headers: dict[str, str], model: str | None) -> tuple[str, str]:
    """(model id to request, a line describing the server)."""
    if model is None:
        listed = await request_json("GET", f"{base_url}/v1/models", headers)
        model = str(listed["data"][0]["id"])
    try:
        version = await request_json("GET", f"{base_url}/version", headers)
        server = f"{base_url} (qwen35 {version.get('version')}, torch {version.get('torch')}, {version.get('platform')})"
    except (HttpError, ValueError, AttributeError):
        server = base_url
    return model, server


def run_bench_serve(args: argparse.Namespace) -> int:
    from qwen35.bench import commit_id, cpu_description
    from qwen35.processor.tokenizer import load_tokenizer

    base_url = args.base_url.rstrip("/")
    api_key = args.api_key or os.environ.get("QWEN35_API_KEY")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    commit = commit_id()
    try:
        model, server = asyncio.run(_server_facts(base_url, headers, args.model))
    except (HttpError, OSError, KeyError, IndexError, ValueError) as exc:
        print(f"error: cannot reach the server at {base_url}: {exc}", file=sys.stderr)
        return 2
    tokenizer = load_tokenizer(args.tokenizer if args.tokenizer and Path(args.tokenizer).is_dir() else None)
    prompts = random_prompts(tokenizer, args.num_prompts, args.input_len, args.seed, words=args.dataset == "random-words")
    bodies = [request_body(args.endpoint, model, p.text, args.output_len, args.ignore_eos, args.thinking,
                           args.temperature) for p in prompts]
    url = base_url + ENDPOINT_PATHS[args.endpoint]
    # One request first, as vllm does: a misconfigured server fails here, not num_prompts times.
    limit_field = "max_completion_tokens" if args.endpoint == "chat" else "max_tokens"
    probe = asyncio.run(timed_request(url, headers, {**bodies[0], limit_field: 2}, args.request_timeout))
    if not probe.success:
        print(f"error: the first request failed: {probe.error}", file=sys.stderr)
        return 2
    outcomes, duration = asyncio.run(_run_traffic(url, headers, bodies, args.request_rate, args.max_concurrency,
                                                  args.seed, args.request_timeout, not args.disable_tqdm))
    result = ServeBenchResult(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), commit=commit,
        machine=cpu_description(), server=server, endpoint=args.endpoint, model=model, dataset=args.dataset,
        num_prompts=args.num_prompts, input_len=args.input_len, output_len=args.output_len,
        request_rate=args.request_rate, max_concurrency=args.max_concurrency, ignore_eos=args.ignore_eos,
        thinking=args.thinking, load_before=load_before,
        load_after=" ".join(f"{x:.2f}" for x in os.getloadavg()), **collect(outcomes, duration),
    )
    text = to_markdown(result)
    print(text)
    if args.out:
        out = Path(args.out)
        record = asdict(result)
        record["request_rate"] = None if math.isinf(result.request_rate) else result.request_rate  # null: inf
        as_json = json.dumps(record, indent=2) + "\n"
        out.write_text(as_json if out.suffix == ".json" else text + "\n")
    return 0 if result.failed == 0 else 1


def add_bench_serve_command(modes: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = modes.add_parser("serve", help="serving benchmark over HTTP against a running `qwen35 serve`",
                         description="Streamed requests against a running server; prints throughput and TTFT / "
                                     "TPOT / ITL / E2E latency (mean, median, p99).")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"the server (default {DEFAULT_BASE_URL})")
    p.add_argument("--api-key", default=None, help="API key (default: $QWEN35_API_KEY)")
    p.add_argument("--endpoint", choices=sorted(ENDPOINT_PATHS), default="chat",
                   help="chat: /v1/chat/completions; completions: /v1/completions (default chat)")
    p.add_argument("--model", default=None, help="model name sent (default: the first of GET /v1/models)")
    p.add_argument("--tokenizer", default=None,
                   help="checkpoint directory whose tokenizer makes the prompts (default: the built-in Qwen3.5 one)")
    p.add_argument("--dataset", choices=["random", "random-words"], default="random",
                   help="random: random token ids decoded to text; random-words: random vocabulary words")
    p.add_argument("--num-prompts", type=int, default=32, help="requests sent (default 32)")
    p.add_argument("--input-len", type=int, default=128, help="tokens per prompt before the chat template (128)")
    p.add_argument("--output-len", type=int, default=64, help="output tokens per request (64)")
    p.add_argument("--request-rate", type=float, default=float("inf"),
                   help="requests per second, Poisson arrivals (default inf: all at once)")
    p.add_argument("--max-concurrency", type=int, default=None, help="requests in flight at most (default: no cap)")
    p.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=True,
                   help="send ignore_eos so every request makes exactly --output-len tokens (default on)")
    p.add_argument("--thinking", action="store_true", help="let the model think (default: enable_thinking false)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompts and the arrival times")
    p.add_argument("--request-timeout", type=float, default=6 * 3600.0, help="seconds per request (6 h)")
    p.add_argument("--disable-tqdm", action="store_true", help="no progress bar")
    p.add_argument("--out", default=None, help="also write the result: JSON for a .json name, else Markdown")
    p.set_defaults(func=run_bench_serve)
