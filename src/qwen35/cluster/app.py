"""The Ray Serve application: the engine deployment (prefix-affinity router, health checks, drain, autoscaling
bounds) and the HTTP front deployment bound to it, built from `qwen35 serve` flags.

Owns `build_application(flags)` (used by `qwen35 serve --replicas N`) and `app_builder` (the import path
operators give `serve run` / a Serve config file: `qwen35.cluster.app:app_builder` with `args: {flags: [...]}`).
Invariant: both paths build the same deployments from the same flags. Each deployment carries a version derived
from what builds its replicas (the package version, its init arguments, its resources), so redeploying with only
another replica count is Serve's lightweight update: the fronts and the replicas that stay are left running, the
replicas it stops drain; any other change replaces the replicas (rolling, each drained).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from qwen35.cluster.flags import parse_serve_flags
from qwen35.engine.args import EngineArgs

ROUTER_CLASS = "qwen35.cluster.router:PrefixAffinityRouter"
ROUTING_STATS_PERIOD_S = 2.0


def replica_resources(args: Any) -> tuple[int, float, int]:
    """(torch threads, GPUs, Ray CPUs) of one engine replica."""
    replicas = max(1, args.max_replicas or args.replicas or 1)
    gpus = args.replica_gpus if args.replica_gpus is not None else (1.0 if args.device == "cuda" else 0.0)
    threads = args.replica_threads or max(1, (os.cpu_count() or 1) // (1 if gpus else replicas))
    return threads, gpus, (1 if gpus else threads)


def deployment_version(*parts: Any) -> str:
    """A stable version of a deployment built from `parts` (and this package's version)."""
    try:
        code = package_version("qwen35")
    except PackageNotFoundError:  # running from a source tree that is not installed
        code = "source"
    blob = json.dumps([code, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_application(flags: Sequence[str], replicas: int | None = None) -> Any:
    """The application of `flags`; `replicas` overrides the engine replica count alone (scaling a running
    application: Serve then changes only the engine deployment, draining the replicas it stops)."""
    from ray import serve

    from qwen35.cluster.front import Front
    from qwen35.cluster.replica import EngineReplica

    args = parse_serve_flags(flags)
    engine_args = dataclasses.asdict(dataclasses.replace(EngineArgs.from_cli_args(args), progress=False))
    threads, gpus, cpus = replica_resources(args)
    if args.min_replicas is not None or args.max_replicas is not None:
        low = args.min_replicas if args.min_replicas is not None else 1
        scaling: dict[str, Any] = {"autoscaling_config": {
            "min_replicas": low, "max_replicas": max(low, args.max_replicas or args.replicas or low),
            "initial_replicas": max(low, args.replicas or low),
            "target_ongoing_requests": max(1, args.max_num_seqs // 2)}}
    else:
        scaling = {"num_replicas": max(1, replicas or args.replicas)}
    engine = serve.deployment(
        name="engine", max_ongoing_requests=args.max_waiting,
        ray_actor_options={"num_cpus": cpus, "num_gpus": gpus},
        health_check_period_s=5.0, health_check_timeout_s=30.0,
        graceful_shutdown_wait_loop_s=1.0, graceful_shutdown_timeout_s=max(1.0, args.drain_timeout),
        request_router_config={
            "request_router_class": ROUTER_CLASS,
            "request_router_kwargs": {"block_tokens": args.route_block_tokens, "imbalance_abs": args.route_imbalance},
            "request_routing_stats_period_s": ROUTING_STATS_PERIOD_S, "request_routing_stats_timeout_s": 5.0},
        **scaling,
    )(EngineReplica)
    front = serve.deployment(
        name="front", num_replicas=max(1, args.front_replicas),
        max_ongoing_requests=max(100, 2 * args.max_waiting), ray_actor_options={"num_cpus": 0},
        graceful_shutdown_wait_loop_s=1.0, graceful_shutdown_timeout_s=max(1.0, args.drain_timeout),
    )(serve.ingress()(Front))
    # Ray 2.60 refuses `version=` and gives every deployment of a `serve.run` a random code version (so a new replica
    # count restarted every replica and front); its own `_version` slot is what it reads instead of the random one.
    # tests/cluster's scale-down test checks that the fronts and the staying replica survive.
    engine._version = deployment_version(engine_args, threads, cpus, gpus)
    front._version = deployment_version(list(flags))
    return front.bind(list(flags), engine.bind(engine_args, threads))


def app_builder(config: dict[str, Any]) -> Any:
    """`serve run qwen35.cluster.app:app_builder flags='[...]'` or a config file's `args: {flags: [...]}`."""
    flags = config.get("flags", [])
    if isinstance(flags, str):
        flags = flags.split()
    return build_application([str(f) for f in flags])
