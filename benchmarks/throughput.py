"""Throughput benchmark: our engine vs transformers' generate on the same weights, vs the measured roofline.

Runs, in one process and on one copy of the weights (the real Qwen3.5-4B text config with dummy weights by
default): (a) batch-1 greedy decode tok/s, (b) prefill tok/s, (c) offline throughput with several concurrent
requests (ours: continuous batching; transformers: one batched `generate` of equal-length prompts, so no padding),
plus the memory-bandwidth and GEMM ceilings measured in the same run, and a profile of our decode step.
Prints a Markdown table (and writes it with --out) with date, commit, machine and load.

Benchmark code: imports qwen35 and transformers, is imported by nothing, and is not part of the test suite.
Invariant: both sides run bit-identical weights (transformers' parameters *are* our tensors, see hf_twin.py), the
same prompts and greedy decoding with EOS ignored, so every ratio compares the same work.

    python benchmarks/throughput.py                 # the real 4B config, fp32, ~15-20 min on 2 cores, ~19 GB RAM
    python benchmarks/throughput.py --tiny          # seconds: tiny random config, smoke test of this script
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benchmark modules when run as a script

from hf_twin import build_twin, check_shared_storage  # noqa: E402
from profile_step import profile_decode  # noqa: E402
from report import Row, capture_environment, load_average, markdown_environment, markdown_table, peak_rss_gb  # noqa: E402  # noqa: E402
from roofline import (  # noqa: E402  # noqa: E402
    Ceilings,
    ideal_seconds,
    measure_buffer_read,
    measure_gemm,
    measure_tensor_read,
    model_cost,
    weight_tensors,
)

from qwen35.engine.args import EngineArgs  # noqa: E402
from qwen35.engine.build import build_engine  # noqa: E402
from qwen35.engine.engine import LLMEngine  # noqa: E402
from qwen35.engine.request import SamplingParams  # noqa: E402
from qwen35.model.config import ModelConfig  # noqa: E402
from qwen35.model.weights import load_config, resolve_checkpoint  # noqa: E402

_request_ids = itertools.count()


# ---- configuration ------------------------------------------------------------------------------------------------
def tiny_text_config() -> dict:
    """A few-layer random Qwen3.5 with the real vocabulary: runs in seconds, exercises every code path."""
    layer_types = ["linear_attention", "full_attention"] * 2
    return {
        "model_type": "qwen3_5_text", "vocab_size": 248320, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
        "layer_types": layer_types, "full_attention_interval": 2, "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_num_key_heads": 2,
        "linear_num_value_heads": 4, "rms_norm_eps": 1e-6, "hidden_act": "silu", "attn_output_gate": True,
        "max_position_embeddings": 4096, "tie_word_embeddings": True, "eos_token_id": 248044,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.25,
                            "mrope_interleaved": True, "mrope_section": [2, 1, 1]},
    }


def resolve_model(args: argparse.Namespace, workdir: Path) -> tuple[str, dict]:
    """(model argument for build_engine, the checkpoint's text_config dict)."""
    if args.tiny or args.num_layers:
        if args.tiny:
            text = tiny_text_config()
        else:  # the real widths with fewer layers: a quick check of timing and memory before the full run
            text = dict(ModelConfig.qwen35_4b().raw["text_config"])
            text["num_hidden_layers"] = args.num_layers
            text["layer_types"] = text["layer_types"][: args.num_layers]
        (workdir / "config.json").write_text(json.dumps({"model_type": "qwen3_5", "text_config": text,
                                                          "tie_word_embeddings": text["tie_word_embeddings"]}))
        return str(workdir), text
    raw = load_config(resolve_checkpoint(args.model, download=args.real_weights)).raw
    return args.model, dict(raw.get("text_config", raw))


def random_prompts(num: int, length: int, vocab_size: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    # Ids below the special-token range, so prompts look like ordinary text to both models.
    return torch.randint(0, min(vocab_size, 248000), (num, length), generator=gen).tolist()


# ---- one generation on each side ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunResult:
    token_ids: list[list[int]]  # per prompt, the generated ids
    seconds: float  # wall time of the whole call
    token_times: list[float]  # batch 1 only: seconds from the call's start to each generated token
    logprobs: list[float]  # batch 1 only, when asked: logprob of each generated token

    def decode_tok_s(self) -> float:
        """Tokens after the first over the time after the first (prefill excluded)."""
        times = self.token_times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")


def run_ours(engine: LLMEngine, prompts: list[list[int]], max_tokens: int, logprobs: bool = False) -> RunResult:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, logprobs=0 if logprobs else None)
    ids = [f"bench-{next(_request_ids)}" for _ in prompts]
    tokens: dict[str, list[int]] = {rid: [] for rid in ids}
    times: list[float] = []
    lps: list[float] = []
    start = time.perf_counter()
    for rid, prompt in zip(ids, prompts):
        engine.add_request(rid, prompt, params)
    while engine.has_unfinished():
        outputs = engine.step()
        now = time.perf_counter()
        for out in outputs:
            for delta in out.sequences:
                tokens[out.request_id].extend(delta.new_token_ids)
                if len(prompts) == 1:
                    times.extend(now - start for _ in delta.new_token_ids)
                    for token, lp in zip(delta.new_token_ids, delta.new_logprobs or []):
                        lps.append(lp[token])
    return RunResult([tokens[rid] for rid in ids], time.perf_counter() - start, times, lps)


def run_theirs(
    model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int, logprobs: bool = False
) -> RunResult:
    from transformers import GenerationConfig
    from transformers.generation.streamers import BaseStreamer

    class TokenClock(BaseStreamer):
        """generate() calls put() once with the prompt, then once per new token."""

        def __init__(self, start: float) -> None:
            self.start = start
            self.times: list[float] = []
            self.seen_prompt = False

        def put(self, value: torch.Tensor) -> None:
            if self.seen_prompt:
                self.times.append(time.perf_counter() - self.start)
            self.seen_prompt = True

        def end(self) -> None:
            pass

    config = GenerationConfig(
        max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False, eos_token_id=None,
        pad_token_id=0, use_cache=True, return_dict_in_generate=True, output_logits=logprobs,
    )
    input_ids = torch.tensor(prompts, dtype=torch.long)
    start = time.perf_counter()
    clock = TokenClock(start) if len(prompts) == 1 else None
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),  # type: ignore[operator]
                             generation_config=config, streamer=clock)
    seconds = time.perf_counter() - start
    new = out.sequences[:, input_ids.shape[1]:].tolist()
    if any(len(t) != max_new_tokens for t in new):
        raise RuntimeError(f"transformers stopped early: {[len(t) for t in new]} tokens, wanted {max_new_tokens}")
    lps: list[float] = []
    if logprobs:
        for step, logits in enumerate(out.logits):
            lps.append(torch.log_softmax(logits[0].float(), -1)[new[0][step]].item())
    return RunResult(new, seconds, clock.times if clock else [], lps)


def num_equal(a: list[list[int]], b: list[list[int]]) -> str:
    return f"greedy outputs identical for {sum(x == y for x, y in zip(a, b))}/{len(a)} requests"


# ---- the run ------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="Qwen/Qwen3.5-4B", help="hub id or checkpoint dir (config used; weights dummy)")
    p.add_argument("--real-weights", action="store_true", help="load the checkpoint's weights instead of dummy ones")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="tiny random config and sizes: a seconds-long smoke test")
    p.add_argument("--num-layers", type=int, default=0, help="truncate the real config to N layers (quick check)")
    p.add_argument("--decode-prompt-len", type=int, default=32)
    p.add_argument("--decode-new-tokens", type=int, default=32)
    p.add_argument("--prefill-len", type=int, default=512)
    p.add_argument("--offline-batches", default="8,16", help="comma-separated numbers of concurrent requests")
    p.add_argument("--offline-prompt-len", type=int, default=32)
    p.add_argument("--offline-new-tokens", type=int, default=16)
    p.add_argument("--profile-steps", type=int, default=3, help="decode steps of ours to profile (0: skip)")
    p.add_argument("--buffer-gb", type=float, default=1.0, help="size of the bandwidth-probe buffer")
    p.add_argument("--skip-transformers", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = p.parse_args(argv)
    if args.tiny:
        for name, value in dict(decode_prompt_len=16, decode_new_tokens=8, prefill_len=128, offline_batches="2,4",
                                offline_prompt_len=16, offline_new_tokens=8, buffer_gb=0.25, profile_steps=2).items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    args.batches = [int(b) for b in str(args.offline_batches).split(",") if b.strip()]
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    env = capture_environment(args.threads)
    log(f"load average before: {env.load_before}; commit {env.commit}; {env.cpu} x{env.num_cores}")
    # The probe buffer is measured before the model exists, while memory is still free.
    buffer_gbps = measure_buffer_read(int(args.buffer_gb * 1e9))
    log(f"buffer read bandwidth: {buffer_gbps:.1f} GB/s")

    workdir = Path(tempfile.mkdtemp(prefix="qwen35-bench-"))
    model_arg, text_config = resolve_model(args, workdir)
    max_batch = max(args.batches, default=1)
    longest = max(args.prefill_len, args.decode_prompt_len + args.decode_new_tokens + args.profile_steps + 2,
                  args.offline_prompt_len + args.offline_new_tokens)
    t0 = time.perf_counter()
    engine = build_engine(EngineArgs(
        model=model_arg, dummy_weights=not args.real_weights, dtype=args.dtype, device="cpu",
        max_model_len=longest + 16, max_num_seqs=max(max_batch, 1),
        max_num_batched_tokens=max(args.prefill_len, max_batch * args.offline_prompt_len, 512),
        kv_cache_gb=None if args.tiny else 0.25, progress=True,
    ))
    ours = engine.runner.model
    log(f"built our engine in {time.perf_counter() - t0:.1f}s; peak RSS {peak_rss_gb():.1f} GiB")

    embed = ours.language_model.embed_tokens.weight
    cost = model_cost(ours, embed, ours.output_weight)
    text = ours.config
    gemm_shape = (args.prefill_len, text.hidden_size, text.intermediate_size)
    ceilings = Ceilings(buffer_read_gbps=buffer_gbps, weight_read_gbps=measure_tensor_read(weight_tensors(ours)),
                        gemm_gflops=measure_gemm(*gemm_shape, dtype=embed.dtype), gemm_shape=gemm_shape)
    log(f"weights {cost.bytes_per_step / 1e9:.2f} GB per step; weight-read {ceilings.weight_read_gbps:.1f} GB/s; "
        f"GEMM {ceilings.gemm_gflops:.1f} GFLOP/s {gemm_shape}")

    twin = None
    if not args.skip_transformers:
        t0 = time.perf_counter()
        built = build_twin(ours, text_config)
        twin = built.model
        twin.generation_config.eos_token_id = None  # never stop on EOS: same work as ours with ignore_eos
        log(f"transformers twin: {built.num_shared_tensors} tensors shared, "
            f"{check_shared_storage(twin, ours)} not shared, attn={built.attn_implementation}, "
            f"{time.perf_counter() - t0:.1f}s")

    rows: list[Row] = []
    # Warm-up on both sides, and a check that both compute the same thing on these weights.
    check = random_prompts(1, 16, text.vocab_size, args.seed + 1)
    ours_check = run_ours(engine, check, 4, logprobs=True)
    agreement = ""
    if twin is not None:
        theirs_check = run_theirs(twin, check, 4, logprobs=True)
        same = [i for i, (a, b) in enumerate(zip(ours_check.token_ids[0], theirs_check.token_ids[0])) if a == b]
        diff = max((abs(ours_check.logprobs[i] - theirs_check.logprobs[i]) for i in same), default=float("nan"))
        agreement = (f"warm-up check: {len(same)}/4 greedy tokens equal, max |logprob diff| {diff:.2e}")
        log(agreement)

    # (a) batch-1 decode
    prompt = random_prompts(1, args.decode_prompt_len, text.vocab_size, args.seed + 2)
    n_new = args.decode_new_tokens
    mine = run_ours(engine, prompt, n_new)
    log(f"ours decode: {mine.decode_tok_s():.3f} tok/s, first token after {mine.token_times[0]:.2f}s")
    theirs = run_theirs(twin, prompt, n_new) if twin is not None else None
    if theirs:
        log(f"transformers decode: {theirs.decode_tok_s():.3f} tok/s, first token after {theirs.token_times[0]:.2f}s")
    ttft = f"; first token after {mine.token_times[0]:.2f}s" + (f" / {theirs.token_times[0]:.2f}s" if theirs else "")
    roof = 1.0 / ideal_seconds(cost, ceilings, 1, 1)
    rows.append(Row(f"batch-1 decode, {args.decode_prompt_len}-token prompt, {n_new} new", "tok/s",
                    mine.decode_tok_s(), theirs.decode_tok_s() if theirs else None, roof,
                    (num_equal(mine.token_ids, theirs.token_ids) + "; " if theirs else "")
                    + "first token excluded" + ttft))
    gc.collect()

    # (b) prefill
    prompt = random_prompts(1, args.prefill_len, text.vocab_size, args.seed + 3)
    mine = run_ours(engine, prompt, 1)
    log(f"ours prefill: {args.prefill_len / mine.seconds:.2f} tok/s")
    theirs = run_theirs(twin, prompt, 1) if twin is not None else None
    if theirs:
        log(f"transformers prefill: {args.prefill_len / theirs.seconds:.2f} tok/s")
    roof = args.prefill_len / ideal_seconds(cost, ceilings, args.prefill_len, 1)
    rows.append(Row(f"prefill, {args.prefill_len}-token prompt (+1 token sampled)", "tok/s",
                    args.prefill_len / mine.seconds, args.prefill_len / theirs.seconds if theirs else None, roof,
                    "one forward pass each; roofline = measured GEMM rate"))
    gc.collect()

    # (c) offline throughput
    for batch in args.batches:
        prompts = random_prompts(batch, args.offline_prompt_len, text.vocab_size, args.seed + 10 + batch)
        n_new = args.offline_new_tokens
        mine = run_ours(engine, prompts, n_new)
        total = batch * n_new
        log(f"ours offline x{batch}: {total / mine.seconds:.2f} generated tok/s")
        theirs = run_theirs(twin, prompts, n_new) if twin is not None else None
        if theirs:
            log(f"transformers offline x{batch}: {total / theirs.seconds:.2f} generated tok/s")
        ideal = (ideal_seconds(cost, ceilings, batch * args.offline_prompt_len, batch)
                 + (n_new - 1) * ideal_seconds(cost, ceilings, batch, batch))
        rows.append(Row(f"offline, {batch} concurrent x ({args.offline_prompt_len} prompt + {n_new} new)",
                        "generated tok/s", total / mine.seconds, total / theirs.seconds if theirs else None,
                        total / ideal, (num_equal(mine.token_ids, theirs.token_ids) + "; " if theirs else "")
                        + "wall time incl. prefill; transformers: one batched generate, equal lengths (no padding)"))
        gc.collect()

    profile_text = ""
    if args.profile_steps > 0:
        prompt = random_prompts(1, args.decode_prompt_len, text.vocab_size, args.seed + 4)
        profile_text = profile_decode(engine, prompt[0], args.profile_steps)
        print(profile_text, flush=True)

    table = markdown_table(rows)
    header = markdown_environment(env, load_average(), peak_rss_gb(), command)
    ceil_text = (f"- ceilings measured in this run: read bandwidth {ceilings.buffer_read_gbps:.1f} GB/s "
                 f"({args.buffer_gb:g} GB buffer sum) / {ceilings.weight_read_gbps:.1f} GB/s (summing the weights "
                 f"themselves); roofline uses {ceilings.read_gbps:.1f} GB/s; GEMM {ceilings.gemm_gflops:.0f} GFLOP/s "
                 f"({args.dtype} {gemm_shape[0]}x{gemm_shape[1]} @ {gemm_shape[1]}x{gemm_shape[2]})\n"
                 f"- weights read per decode step: {cost.bytes_per_step / 1e9:.2f} GB ({args.dtype}); decode roofline "
                 f"= bandwidth / that; prefill and batched rooflines also bound by GEMM FLOPs "
                 f"({cost.flops_per_token(False) / 1e9:.2f} GFLOP per token + {2 * cost.lm_head_params / 1e9:.2f} "
                 f"per logits row)")
    if agreement:
        ceil_text += f"\n- {agreement}"
    report = f"{header}\n{ceil_text}\n\n{table}\n"
    if profile_text:
        report += f"\n{profile_text}\n"
    print("\n" + report, flush=True)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
