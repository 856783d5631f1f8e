"""`qwen35 serve`: build the engine, processor, platform and app, then run uvicorn.

Owns the serve command's arguments (the engine's are `EngineArgs.add_cli_args`, built into one `EngineArgs`) and
the wiring order (engine first: it fixes max_model_len; the platform store is opened and migrated before the
socket opens). Heavy imports happen inside the command so `qwen35 --help` stays quick. Invariant: the engine thread is shut down and the store closed however uvicorn exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
from typing import Any

from qwen35.engine.args import EngineArgs  # light: no torch

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register `serve` on the CLI's subparsers (called by qwen35.cli)."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the OpenAI- and Anthropic-compatible HTTP APIs",
        description="Serve Qwen3.5-4B over HTTP, with the playground at / and the dashboard at /dashboard. Every /v1 "
        "request needs an API key: on an empty store the first start creates an admin key and prints it once; "
        "`qwen35 keys create` makes more.",
    )
    EngineArgs.add_cli_args(parser)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--data-dir", default=None, help="platform store directory (default: $QWEN35_HOME or ~/.qwen35)")
    parser.add_argument("--database-url", default=None, help="e.g. postgresql+psycopg://... (default: SQLite in --data-dir)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="json: one JSON object per line (ts, level, logger, msg, request_id); secrets are "
                        "masked in either format")
    parser.add_argument("--no-docs", action="store_true", help="do not serve /docs and /openapi.json")
    parser.add_argument("--allow-private-media-urls", action="store_true",
                        help="let image/video URLs point at loopback, private or link-local addresses (trusted "
                        "networks only; public addresses only by default)")
    parser.add_argument("--max-image-pixels", type=int, default=None,
                        help="resize budget per image in pixels (default: the checkpoint's preprocessor config, "
                        "16.7M); fewer pixels, fewer tokens (one token per 32x32)")
    parser.add_argument("--max-video-frames", type=int, default=768, help="sampled frames per video (default 768)")
    parser.add_argument("--max-video-seconds", type=float, default=600.0, help="longest video accepted (600)")
    parser.add_argument("--max-media-mb", type=float, default=20.0,
                        help="largest image in MB (default 20; videos: 5x this)")
    parser.add_argument("--linkup-api-key", default=None,
                        help="Linkup API key: turns on the server-run web search tool, billed per call (default: "
                        "$LINKUP_API_KEY; prefer the variable, a flag shows in the process list)")
    parser.add_argument("--linkup-base-url", default=None,
                        help="Linkup API base URL (default: $LINKUP_BASE_URL or https://api.linkup.so/v1)")
    parser.add_argument("--max-web-searches", type=int, default=5,
                        help="web searches per request at most (a request may ask for fewer; default 5)")
    parser.add_argument("--auth-max-failures", type=int, default=20,
                        help="failed authentications per client address per window before 429 + retry-after "
                        "(default 20; 0: off; valid keys are never refused)")
    parser.add_argument("--auth-failure-window", type=float, default=60.0, help="that window in seconds (60)")
    parser.add_argument("--no-usage-journal", action="store_true",
                        help="do not journal usage locally while the store refuses writes: such answers are "
                        "refused (503) instead")
    parser.add_argument("--store-lock-timeout", type=float, default=30.0,
                        help="seconds a store write waits for a lock held elsewhere before the store counts as "
                        "unavailable (503 / journal; default 30)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="on SIGTERM, seconds running answers may take to finish while new generations get 503 "
                        "(a second signal stops at once; 0: stop at once)")
    parser.add_argument("--request-timeout", type=float, default=None,
                        help="seconds a generation may run (queue wait included); past it a non-streamed request "
                        "gets 504 and a stream its in-stream timeout error, billed for what was generated (default: "
                        "no limit)")
    parser.add_argument("--trust-control-tokens", action="store_true",
                        help="tokenize control-token strings in message text as control tokens (transformers' and "
                        "vLLM's behaviour; lets a client forge turns: trusted callers only). Default: client text "
                        "is always text")
    parser.set_defaults(func=serve)
    return parser


def _web_search(args: argparse.Namespace) -> Any:
    from qwen35.serving.linkup import LinkupProvider
    from qwen35.serving.web_search import WebSearchService

    provider = LinkupProvider.from_env(args.linkup_api_key, args.linkup_base_url)
    return None if provider is None else WebSearchService(provider, max_uses=max(1, args.max_web_searches))


def _media_resolver(args: argparse.Namespace, processor: Any, engine: Any) -> Any:
    from qwen35.processor.media import MediaLimits
    from qwen35.serving.media import MediaResolver
    from qwen35.serving.media_fetch import FetchPolicy

    vision = processor.vision if getattr(engine, "supports_media", False) else None
    mb = int(args.max_media_mb * 2**20)
    limits = MediaLimits(max_image_bytes=mb, max_video_bytes=5 * mb, max_video_frames=args.max_video_frames,
                         max_video_seconds=args.max_video_seconds, image_max_pixels=args.max_image_pixels)
    return MediaResolver(vision.with_limits(limits) if vision is not None else None,
                         FetchPolicy(allow_private=args.allow_private_media_urls))


def open_platform(args: argparse.Namespace) -> Any:
    """The platform store of the serve flags, opened and migrated, this server's heartbeat started (it frees the
    holds and concurrency slots of dead servers, kill -9 included)."""
    from qwen35.platform.platform import Platform

    platform = Platform.open(data_dir=args.data_dir, database_url=args.database_url,
                             journal=not args.no_usage_journal, lock_timeout_s=args.store_lock_timeout)
    platform.start_instance()
    return platform


def build_application(args: argparse.Namespace, engine: Any, platform: Any) -> Any:
    """The FastAPI app of the serve flags over a built engine (in-process, or the replicas of `qwen35.cluster`)."""
    from qwen35.api.app import create_app
    from qwen35.api.settings import ServerSettings
    from qwen35.processor import load_processor
    from qwen35.serving.core import ServingCore

    processor = load_processor(getattr(engine, "model_dir", None))
    if args.trust_control_tokens:
        processor = dataclasses.replace(processor, split_control_tokens=False)
    core = ServingCore(engine, processor, media=_media_resolver(args, processor, engine),
                       web_search=_web_search(args))
    # the grammar token table (~1 s) is built while the server starts, not on the first constrained request
    threading.Thread(target=core.grammars.warm, name="grammar-warm-up", daemon=True).start()
    settings = ServerSettings(
        max_model_len=core.max_model_len, model_path=args.model, data_dir=args.data_dir, docs=not args.no_docs,
        max_request_s=args.request_timeout,
        auth_max_failures=args.auth_max_failures, auth_failure_window_s=args.auth_failure_window,
    )
    return create_app(core, platform, settings)


def serve(args: argparse.Namespace) -> int:
    from qwen35.api.logs import configure_logging
    from qwen35.api.settings import MODEL_ID
    from qwen35.api.web.startup import first_run_key, run_server
    from qwen35.engine.build import build_async_engine

    configure_logging(args.log_level, args.log_format)
    try:
        engine = build_async_engine(EngineArgs.from_cli_args(args))
    except Exception as exc:  # noqa: BLE001 - a CLI reports what went wrong, it does not dump a trace
        print(f"error: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        return 2
    platform = None
    try:
        platform = open_platform(args)
        first_secret = first_run_key(platform)
        app = build_application(args, engine, platform)
    except Exception as exc:  # noqa: BLE001
        engine.shutdown()
        if platform is not None:
            platform.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        print(f"qwen35: serving {MODEL_ID} on http://{args.host}:{args.port} (store: {platform.url})",
              file=sys.stderr)
        code = run_server(app, args.host, args.port, args.log_level, first_secret, args.drain_timeout)
    finally:
        engine.shutdown()
        platform.close()
    return code
