"""Command line: `qwen35 generate | serve | bench | keys | accounts | credits`.

Composition root: parses arguments and wires the engine, processor, API and platform; owns no logic of theirs.
The engine is built from one `EngineArgs` (its flags are `EngineArgs.add_cli_args`). Heavy imports (torch, the
engine) happen inside the command that needs them, so `qwen35 keys create` is quick.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from qwen35.engine.args import EngineArgs  # light: no torch


def _generate(args: argparse.Namespace) -> int:
    from qwen35.engine.build import build_engine
    from qwen35.engine.request import EngineError, SamplingParams
    from qwen35.processor import load_processor
    from qwen35.processor.detokenizer import IncrementalDetokenizer

    engine = build_engine(EngineArgs.from_cli_args(args))
    processor = load_processor(engine.model_dir)
    if args.raw:
        prompt_ids = processor.tokenizer.encode(args.prompt)
    else:
        prompt_ids = processor.encode_chat([{"role": "user", "content": args.prompt}],
                                           enable_thinking=not args.no_thinking)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                            top_k=args.top_k, seed=args.seed)
    try:
        engine.add_request("cli", prompt_ids, params)
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    detok = IncrementalDetokenizer(processor.tokenizer, skip_special_tokens=True)
    finish = None
    while engine.has_unfinished():
        for out in engine.step():
            for delta in out.sequences:
                sys.stdout.write(detok.add(delta.new_token_ids))
                sys.stdout.flush()
                finish = delta.finish_reason or finish
    sys.stdout.write(detok.flush() + "\n")
    print(f"[finish_reason={finish.value if finish else None}]", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    """`qwen35 serve`: one in-process engine, or `--replicas N` / `--ray-address` engine replicas on Ray Serve."""
    if args.replicas or args.ray_address or args.max_replicas:
        from qwen35.cluster.launch import serve_cluster

        return serve_cluster(args, args.serve_flags)
    return int(args._in_process(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwen35", description="Self-hosted Qwen3.5-4B: engine, APIs, platform")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate from a prompt, streamed to the terminal")
    EngineArgs.add_cli_args(gen)
    gen.add_argument("prompt")
    gen.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    gen.add_argument("--no-thinking", action="store_true", help="render the template's no-thinking prompt")
    gen.add_argument("--max-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.7)
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--top-k", type=int, default=20)
    gen.add_argument("--seed", type=int, default=None)
    gen.set_defaults(func=_generate)

    from qwen35.bench import add_bench_command

    add_bench_command(sub)
    try:
        from qwen35.api.server import add_serve_command
    except ImportError:
        add_serve_command = None
    if add_serve_command is not None:
        from qwen35.cluster.flags import add_cluster_args

        serve_parser = add_cluster_args(add_serve_command(sub))
        serve_parser.set_defaults(func=_serve, _in_process=serve_parser.get_default("func"))
    try:
        from qwen35.platform.cli import add_platform_commands
    except ImportError:
        add_platform_commands = None
    if add_platform_commands is not None:
        add_platform_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "serve":  # the replicas' fronts parse the same flags
        args.serve_flags = argv[argv.index("serve") + 1:]
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
