"""`qwen35 bench`: offline throughput of this engine on this machine, against the read-bandwidth roofline measured
in the same run (prefill, then decode at batch 1 / 4 / 8 / 16).

Composition root for benchmarking: builds one engine from `EngineArgs` (flags shared with serve / generate), drives
it with random prompts, greedy decoding and EOS ignored, and prints a Markdown table with date, commit, machine and
load. Roofline of a decode step = the weight bytes one forward pass reads (quantised linears + the tied LM head
once + the small dense tensors) / the read bandwidth of both cores measured here before the model is built; a batch
of b sequences can produce at most b tokens per such step. Invariant: every % printed is against a ceiling measured in
this process, never against a number from elsewhere.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qwen35.engine.args import EngineArgs  # light: the rest (torch, the engine) loads when the command runs

if TYPE_CHECKING:
    from qwen35.engine.engine import LLMEngine

# llama.cpp on the same random 4B, 2 threads, measured on the two kinds of 2-core machine this project runs on
# (benchmarks/llamacpp_peer.py measures them beside us in one run); quoted by `qwen35 bench`, never run by it.
# Keys: batch-1 decode per weight format (ours -> llama.cpp's q8_0 / q4_0 / bf16), llama-server with 8 parallel
# slots (aggregate over HTTP), bf16 prefill of 512 tokens.
PEERS_BY_MACHINE = {
    "avx512": ("2-core AMD EPYC with AVX-512 VNNI/BF16, 2026-12-04",
               {"bf16": 4.18, "int8": 5.20, "int4": 9.52, "server8": 4.33, "prefill": 33.15}),
    "avx2": ("2-core AVX2 machine without AVX-512, 2026-11-27 / 12-01",
             {"bf16": 1.87, "int8": 3.68, "int4": 4.11, "server8": 5.4, "prefill": 12.0}),
}


def quoted_peers() -> tuple[str, dict[str, float]]:
    """The peer figures of this CPU's kind (AVX-512 VNNI or not)."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return PEERS_BY_MACHINE["avx512" if "avx512_vnni" in flags.split() else "avx2"]


@dataclass(frozen=True)
class Result:
    metric: str
    tok_s: float
    roofline: float | None
    note: str = ""


def measure_read_bandwidth(num_bytes: int = 2**30, repeats: int = 5) -> float:
    """GB/s of reading a fresh buffer once with every thread (the compiled reader; torch.sum without it)."""
    import torch

    from qwen35.model.kernels.build import library

    buf = torch.ones(num_bytes, dtype=torch.uint8)
    lib = library()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        if lib is not None:
            lib.qwen35_read_bytes(buf.data_ptr(), num_bytes)
        else:
            buf.view(torch.float32).sum()
        best = min(best, time.perf_counter() - start)
    return num_bytes / best / 1e9


def _prompt(n: int, seed: int) -> list[int]:
    import torch

    return torch.randint(0, 240000, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _run(engine: LLMEngine, prompts: list[list[int]], max_tokens: int) -> tuple[float, int, int]:
    """(decode seconds, decode tokens, steps) after every prompt has produced its first token."""
    from qwen35.engine.request import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    base = f"bench-{time.monotonic_ns()}-"
    for i, ids in enumerate(prompts):
        engine.add_request(base + str(i), ids, params)
    produced = dict.fromkeys(range(len(prompts)), 0)
    start: float | None = None
    tokens = steps = 0
    while engine.has_unfinished():
        outs = engine.step()
        new = sum(len(d.new_token_ids) + (d.stop_token_id is not None) for out in outs for d in out.sequences)
        if start is not None:
            tokens += new
            steps += 1
        for out in outs:
            produced[int(out.request_id.rsplit("-", 1)[1])] += 1
        if start is None and all(produced.values()):
            start = time.perf_counter()
    return (time.perf_counter() - start if start else 0.0), tokens, steps


def _prefill(engine: LLMEngine, length: int) -> float:
    from qwen35.engine.request import SamplingParams

    params = SamplingParams(max_tokens=1, temperature=0, ignore_eos=True)
    engine.add_request(f"prefill-{time.monotonic_ns()}", _prompt(length, 7), params)
    start = time.perf_counter()
    while engine.has_unfinished():
        engine.step()
    return length / (time.perf_counter() - start)


def commit_id() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _kernel_isa() -> str:
    from qwen35.model.kernels.build import library, use_vnni

    if library() is None:
        return "pure-torch twins"
    return "AVX512-VNNI tiles + AVX2" if use_vnni() else "AVX2/FMA/F16C"


def cpu_description() -> str:
    """CPU model, core count and the SIMD flags the kernels use (no torch: `qwen35 bench serve` prints it too)."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = ", ".join(f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16") if f in flags) or "no AVX2"
    return f"{model}, {os.cpu_count()} cores (flags: {isa})"


def _machine() -> str:
    import torch

    return f"{cpu_description()}, kernels: {_kernel_isa()}, torch {torch.__version__} with {torch.get_num_threads()} threads"


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from qwen35.engine.build import build_engine
    from qwen35.engine.runner import weight_read_bytes
    from qwen35.model.kernels.build import library

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    commit = commit_id()  # at start: the code this process runs
    bandwidth = measure_read_bandwidth(int(args.buffer_gb * 2**30))
    batches = [int(b) for b in args.batches.split(",") if b]
    engine_args = EngineArgs.from_cli_args(args)
    if engine_args.max_num_seqs < max(batches):
        engine_args = EngineArgs(**{**engine_args.__dict__, "max_num_seqs": max(batches)})
    engine = build_engine(engine_args)
    runner = engine.runner
    weight_bytes = weight_read_bytes(runner)
    step_ceiling = bandwidth * 1e9 / weight_bytes  # decode steps per second if only weights were read
    _run(engine, [_prompt(8, 0)], 3)  # warm-up: kernels compiled, caches touched
    results: list[Result] = []
    if args.prefill_len:
        results.append(Result(f"prefill, {args.prefill_len}-token prompt", _prefill(engine, args.prefill_len), None))
    fmt_key = str(getattr(runner.model, "quantization", "none"))
    where, peers = quoted_peers()
    if results:
        r = results[0]
        results[0] = Result(r.metric, r.tok_s, None, f"{r.tok_s / peers['prefill']:.2f}x llama.cpp bf16 (quoted)")
    # Rounds of every batch size in turn: the machine's speed drifts (a shared VM: 1.5-2x within an hour), so each
    # batch's rate is the median over rounds and its ratio to batch 1 the median of the ratios within a round.
    rounds: dict[int, list[tuple[float, float]]] = {b: [] for b in batches}  # b -> [(tok/s, s/step)]
    for r in range(max(1, args.rounds)):
        for b in batches:
            seconds, tokens, steps = _run(engine, [_prompt(args.prompt_len, 100 + 16 * r + i) for i in range(b)],
                                          args.new_tokens + 1)
            rounds[b].append((tokens / seconds if seconds else 0.0, seconds / max(steps, 1)))
    for b in batches:
        rates = [rate for rate, _ in rounds[b]]
        rate = statistics.median(rates)
        note = (f"{1e3 * statistics.median(t for _, t in rounds[b]):.0f} ms/step, {rate / b:.2f} tok/s per "
                f"sequence; median of {len(rates)} rounds ({min(rates):.2f}-{max(rates):.2f})")
        if b == 1:
            if fmt_key in peers:
                note += f"; {rate / peers[fmt_key]:.2f}x the same-format llama.cpp (quoted)"
        elif 1 in rounds:
            ratios = [mine / one for (mine, _), (one, _) in zip(rounds[b], rounds[1]) if one]
            if ratios:
                note += f"; {statistics.median(ratios):.1f}x our batch 1 (median of per-round ratios)"
            if b == 8:
                note += f", {rate / peers['server8']:.2f}x llama-server 8 slots (quoted)"
        results.append(Result(f"decode, batch {b}", rate, b * step_ceiling, note))
    fmt = runner_format(engine)
    lines = [
        f"## qwen35 bench: {fmt} weights",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}; commit `{commit}` (at start)",
        f"- machine: {_machine()}; load average before: {load_before}, after: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"- model: {engine_args.model}{' (random weights)' if engine_args.dummy_weights else ''}; weight bytes read "
        f"per step {weight_bytes / 1e9:.2f} GB; read bandwidth measured in this run {bandwidth:.1f} GB/s "
        f"(compiled kernels: {'yes' if library() is not None else 'no, pure-torch twins'})",
        f"- decode: {args.prompt_len}-token random prompts, {args.new_tokens} new tokens each after the first, "
        f"greedy, EOS ignored; tok/s counts every sequence's tokens; {max(1, args.rounds)} rounds of every batch "
        "size in turn, medians",
        "",
        "| metric | tok/s | roofline tok/s | % of roofline | note |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        roof = f"{r.roofline:.2f}" if r.roofline else "-"
        pct = f"{100 * r.tok_s / r.roofline:.0f}%" if r.roofline else "-"
        lines.append(f"| {r.metric} | {r.tok_s:.2f} | {roof} | {pct} | {r.note} |")
    names = {"bf16": "bf16 decode, batch 1", "int8": "q8_0 decode, batch 1", "int4": "q4_0 decode, batch 1",
             "server8": "llama-server 8 parallel slots, aggregate", "prefill": "bf16 prefill 512"}
    lines += ["", f"llama.cpp quoted, not run here (same random 4B, 2 threads, {where}; "
              "`python benchmarks/llamacpp_peer.py` runs it beside us):", ""]
    lines += [f"- llama.cpp {names[key]}: {value} tok/s" for key, value in peers.items()]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def runner_format(engine: LLMEngine) -> str:
    return engine.runner.weight_format


def add_bench_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser("bench", help="offline throughput on this machine vs its measured bandwidth roofline")
    EngineArgs.add_cli_args(bench)
    bench.add_argument("--prefill-len", type=int, default=512, help="prompt tokens of the prefill run (0: skip)")
    bench.add_argument("--batches", default="1,4,8,16", help="decode batch sizes, comma-separated")
    bench.add_argument("--prompt-len", type=int, default=32, help="prompt tokens of each decoding sequence")
    bench.add_argument("--new-tokens", type=int, default=16, help="decode tokens timed per sequence")
    bench.add_argument("--rounds", type=int, default=3,
                       help="rounds of every batch size in turn (medians: the machine's speed drifts)")
    bench.add_argument("--buffer-gb", type=float, default=1.0, help="buffer read to measure the bandwidth")
    bench.add_argument("--threads", type=int, default=0, help="torch / kernel threads (default: torch's)")
    bench.add_argument("--out", default=None, help="also write the Markdown report to this file")
    bench.set_defaults(func=run_bench)
    # `qwen35 bench [flags]` stays the offline bench; `qwen35 bench serve [flags]` benchmarks a running server.
    from qwen35.bench_serve import add_bench_serve_command  # here: bench_serve imports this module's helpers

    add_bench_serve_command(bench.add_subparsers(dest="bench_mode", metavar="{serve}", required=False))
