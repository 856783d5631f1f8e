"""`qwen35 serve --replicas N`: the serve command on Ray Serve (a local Ray cluster, or `--ray-address`).

Owns the driver's part: Ray and Serve start-up (a local cluster binds to loopback when the HTTP host is loopback,
no dashboard, no usage reporting), the first-run admin key (created in the shared store before any replica
starts, printed once), deploying `app.build_application`, the ready announcement, and shutdown on SIGINT /
SIGTERM (Serve drains every replica for `--drain-timeout` seconds). Invariant: a local Ray cluster started here is
stopped here, however the command ends.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence

LOOPBACK = ("127.0.0.1", "localhost", "::1")
APP_NAME = "qwen35"


def ray_environment() -> None:
    """Ray's defaults that would reach outside: usage statistics off."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_SERVE_USAGE_STATS_ENABLED", "0")


def loopback_only() -> None:
    """A local cluster whose processes talk over 127.0.0.1 only (Ray otherwise binds the node's interface IP).
    Ray's switch for it is the one it uses on macOS and Windows; set before ray is imported."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def start_ray(args: argparse.Namespace, num_cpus: int) -> bool:
    """Connect to `--ray-address` or start a local cluster; True when this process started it."""
    ray_environment()
    if not args.ray_address and args.host in LOOPBACK:
        loopback_only()
    import ray

    if args.ray_address:
        ray.init(address=args.ray_address, log_to_driver=False)
        return False
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


def deploy(args: argparse.Namespace, flags: Sequence[str]) -> str:
    """Start Serve's HTTP proxy on --host/--port and run the application; returns the base URL."""
    from ray import serve

    from qwen35.cluster.app import build_application

    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_application(flags), name=APP_NAME, route_prefix="/", blocking=False)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    return f"http://{host}:{args.port}"


def serve_cluster(args: argparse.Namespace, flags: Sequence[str]) -> int:
    from qwen35.api.server import open_platform
    from qwen35.api.web.startup import announcement, first_run_key
    from qwen35.cluster.app import replica_resources

    threads, gpus, cpus = replica_resources(args)
    try:  # the store exists and is migrated before any replica opens it; the first key is made once, here
        platform = open_platform(args)
        try:
            secret = first_run_key(platform)
            url = platform.url
        finally:
            platform.close()
    except Exception as exc:  # noqa: BLE001 - a CLI reports what went wrong
        print(f"error: {exc}", file=sys.stderr)
        return 2
    replicas = max(1, args.max_replicas or args.replicas)
    started = start_ray(args, num_cpus=max(os.cpu_count() or 1, replicas * cpus))
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        base = deploy(args, flags)
        print(f"qwen35: {args.replicas} engine replica(s) ({threads} threads, {gpus:g} GPU each) on Ray Serve "
              f"(store: {url})", file=sys.stderr)
        print(announcement(base, secret), file=sys.stderr, flush=True)
        while not stop["now"]:
            time.sleep(0.5)
        return 0
    except Exception as exc:  # noqa: BLE001
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        from ray import serve

        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            if started:
                import ray

                ray.shutdown()
