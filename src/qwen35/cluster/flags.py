"""The scale-out flags of `qwen35 serve` and the parse of a whole serve command line (fronts and the `serve run`
builder take the same flags an operator passes to `qwen35 serve`).

Owns `add_cluster_args` (added to the serve command by the CLI) and `parse_serve_flags`. Imports no ray.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_cluster_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    group = parser.add_argument_group("scale-out on Ray Serve (pip install 'qwen35[cluster]')")
    group.add_argument("--replicas", type=int, default=0,
                       help="engine replicas behind one endpoint on Ray Serve (0: one in-process engine, no Ray)")
    group.add_argument("--min-replicas", type=int, default=None,
                       help="autoscaling lower bound (with --max-replicas; default: a fixed --replicas)")
    group.add_argument("--max-replicas", type=int, default=None, help="autoscaling upper bound")
    group.add_argument("--front-replicas", type=int, default=1, help="HTTP front replicas (default 1)")
    group.add_argument("--ray-address", default=None,
                       help="join this Ray cluster (e.g. ray://head:10001 or auto); default: start a local one")
    group.add_argument("--replica-threads", type=int, default=None,
                       help="torch threads per engine replica on CPU (default: the cores / --replicas)")
    group.add_argument("--replica-gpus", type=float, default=None,
                       help="GPUs per engine replica (default: 1 with --device cuda, else 0)")
    group.add_argument("--replica-retries", type=int, default=2,
                       help="retries on another replica of a request whose replica died before any output (2)")
    group.add_argument("--route-block-tokens", type=int, default=32,
                       help="prompt tokens per routing block (prefix affinity granularity; default 32)")
    group.add_argument("--route-imbalance", type=int, default=4,
                       help="requests a prefix's replica may carry above the lightest before the prefix moves (4)")
    return parser


def parse_serve_flags(flags: Sequence[str]) -> argparse.Namespace:
    """The namespace `qwen35 serve FLAGS...` would parse (every default filled in)."""
    from qwen35.api.server import add_serve_command

    root = argparse.ArgumentParser(prog="qwen35")
    add_cluster_args(add_serve_command(root.add_subparsers(dest="command")))
    return root.parse_args(["serve", *flags])
