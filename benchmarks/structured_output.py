"""Structured-output cost: decode tok/s with and without a grammar in the same run, and grammar compile times.

Runs our engine (the real Qwen3.5-4B text config with dummy weights by default, or `--tiny`) over the same random
prompt three ways: unconstrained, under a JSON grammar (a free string: the matcher's widest state, the
costly case for masks) and under a forced tool call (`tool_choice: required`, Qwen XML), each at
batch 1 and batch `--batch`. Every run generates exactly `--new-tokens` tokens per sequence (EOS ignored; the JSON
grammar holds one string of at least 4,000 characters, so it cannot complete early). Also times the grammar compiler: the token
table (built once per tokenizer), a schema's first compile and the same schema again (cached).
Prints a Markdown table with date, commit and machine. Benchmark code: imported by nothing, not a test.

    python benchmarks/structured_output.py --tiny     # seconds
    python benchmarks/structured_output.py            # the real 4B config, fp32, ~17 GB RAM, ~5-10 min on 2 cores
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import capture_environment, load_average, peak_rss_gb  # noqa: E402
from throughput import random_prompts, resolve_model  # noqa: E402

from qwen35.engine.args import EngineArgs  # noqa: E402
from qwen35.engine.build import build_engine  # noqa: E402
from qwen35.engine.engine import LLMEngine  # noqa: E402
from qwen35.engine.request import SamplingParams  # noqa: E402
from qwen35.processor import load_processor  # noqa: E402
from qwen35.processor.grammar import AnswerSpec, GrammarCompiler, ToolGrammar  # noqa: E402

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 8},
    "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string",
                                                                                       "pattern": "^[0-9]{5}$"}},
                "required": ["city", "zip"]}}, "required": ["name", "age", "tags", "address"]}
TOOLS = (ToolGrammar("get_weather", {"type": "object", "properties": {"city": {"type": "string"}, "days": {
    "type": "integer", "minimum": 1, "maximum": 14}}, "required": ["city", "days"]}),
         ToolGrammar("search", {"type": "object", "properties": {"query": {"type": "string"}},
                                "required": ["query"]}))


def timed_generate(engine: LLMEngine, prompts: list[list[int]], params: SamplingParams) -> tuple[int, float]:
    """(tokens generated after each sequence's first, seconds from the first token's step to the end)."""
    for i, prompt in enumerate(prompts):
        engine.add_request(f"r{time.perf_counter_ns()}-{i}", prompt, params)
    num_tokens, first_at = 0, None
    while engine.has_unfinished():
        outputs = engine.step()
        now = time.perf_counter()
        for out in outputs:
            for delta in out.sequences:
                if first_at is None:
                    first_at = now
                    continue  # the step that produced first tokens holds the prefill
                num_tokens += len(delta.new_token_ids) + (1 if delta.stop_token_id is not None else 0)
    return num_tokens, time.perf_counter() - (first_at or time.perf_counter())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny random config with the real vocabulary")
    p.add_argument("--model", default="Qwen/Qwen3.5-4B", help="hub id or checkpoint dir (config; dummy weights)")
    p.add_argument("--num-layers", type=int, default=0, help="real widths with fewer layers")
    p.add_argument("--real-weights", action="store_true")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = capture_environment(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])

    workdir = Path(tempfile.mkdtemp(prefix="qwen35-structured-"))
    model_arg, _ = resolve_model(args, workdir)
    processor = load_processor(None)
    engine = build_engine(EngineArgs(model=model_arg, dummy_weights=not args.real_weights, dtype=args.dtype,
                                     device="cpu", max_model_len=args.prompt_len + args.new_tokens + 64,
                                     max_num_seqs=args.batch, kv_cache_gb=None if args.tiny else 0.25,
                                     progress=not args.tiny))
    tokenizer = processor.tokenizer

    compiler = GrammarCompiler(tokenizer, engine.vocab_size, tokenizer.stop_token_ids)
    t0 = time.perf_counter()
    long_text = {"type": "object", "properties": {"text": {"type": "string", "minLength": 4000}}, "required": ["text"]}
    json_object = compiler.compile(AnswerSpec(json_schema=long_text))
    table_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiler.compile(AnswerSpec(json_schema=SCHEMA))
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiler.compile(AnswerSpec(json_schema=SCHEMA))
    cached_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tools = compiler.compile(AnswerSpec(tools=TOOLS, calls_required=True))
    tools_s = time.perf_counter() - t0

    prompts = random_prompts(args.batch, args.prompt_len, engine.vocab_size, seed=0)
    rows = []
    for label, grammar in (("none", None), ("json (free string)", json_object), ("tool_choice=required", tools)):
        for batch in (1, args.batch):
            params = SamplingParams(max_tokens=args.new_tokens, temperature=1.0, seed=1, ignore_eos=True,
                                    grammar=grammar)
            # warm-up at the same batch size (first-time allocations stay out of the timed run)
            timed_generate(engine, prompts[:batch], SamplingParams(max_tokens=3, grammar=grammar, ignore_eos=True))
            num, seconds = timed_generate(engine, prompts[:batch], params)
            rows.append((label, batch, num, seconds, num / seconds if seconds > 0 else float("nan")))
            print(f"{label:22} batch {batch}: {num} tokens in {seconds:.2f}s = {rows[-1][4]:.2f} tok/s", flush=True)
    base = {batch: tok_s for label, batch, _, _, tok_s in rows if label == "none"}
    lines = [
        f"- date: {env.date}; commit `{env.commit}`; machine: {env.cpu}, {env.num_cores} cores; torch "
        f"{torch.__version__}; {args.threads} threads; load before {env.load_before}, after {load_average()}; "
        f"peak RSS {peak_rss_gb():.1f} GiB",
        f"- model: {'tiny random config' if args.tiny else 'Qwen3.5-4B text config, dummy weights'}, {args.dtype}; "
        f"prompt {args.prompt_len} tokens; {args.new_tokens} new tokens per sequence; temperature 1, EOS ignored",
        f"- command: `{command}`",
        "",
        f"Grammar compile: token table + first grammar {table_s * 1e3:.0f} ms; a new schema {first_s * 1e3:.1f} ms; "
        f"the same schema again {cached_s * 1e3:.2f} ms; a two-tool call grammar {tools_s * 1e3:.1f} ms",
        "",
        "| grammar | batch | tokens | seconds | decode tok/s | vs none |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, batch, num, seconds, tok_s in rows:
        lines.append(f"| {label} | {batch} | {num} | {seconds:.2f} | {tok_s:.2f} | {tok_s / base[batch]:.3f} |")
    report = "\n".join(lines)
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
