"""Benchmark environment capture (date, commit, machine, load, memory) and the Markdown results table.

Owns what a results table must state so a number can be reproduced or doubted: when, on which commit (and whether
engine/model files had uncommitted edits), on which CPU, under what load. Imports the standard library only.
Invariant: every row of the table shows ours, transformers, their ratio and ours as a % of the roofline measured
in the same run (a dash where a value does not exist, never a made-up number).
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=10).stdout.rstrip()
    except (OSError, subprocess.SubprocessError):
        return ""


@dataclass(frozen=True)
class Environment:
    date: str
    commit: str
    dirty_engine_files: tuple[str, ...]  # uncommitted edits under src/qwen35/{engine,model} when measured
    cpu: str
    num_cores: int
    mem_total_gb: float
    mem_available_gb: float  # before the run: what the other processes on the machine left us
    torch_version: str
    transformers_version: str
    num_threads: int
    load_before: str


def cpu_model() -> str:
    for line in _run(["lscpu"]).splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def meminfo_gb(field: str) -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def capture_environment(num_threads: int) -> Environment:
    import torch
    import transformers

    dirty = _run(["git", "status", "--porcelain", "--", "src/qwen35/engine", "src/qwen35/model"])
    return Environment(
        date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        commit=_run(["git", "rev-parse", "--short", "HEAD"]).strip() or "unknown",
        dirty_engine_files=tuple(line.split(maxsplit=1)[1] for line in dirty.splitlines() if line.strip()),
        cpu=cpu_model(),
        num_cores=os.cpu_count() or 0,
        mem_total_gb=meminfo_gb("MemTotal"),
        mem_available_gb=meminfo_gb("MemAvailable"),
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
        num_threads=num_threads,
        load_before=load_average(),
    )


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@dataclass(frozen=True)
class Row:
    metric: str
    unit: str
    ours: float
    theirs: float | None  # None: transformers was not run for this metric
    roofline: float | None  # the ceiling in the same unit, from ceilings measured in this run
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.theirs else self.ours / self.theirs

    @property
    def pct_roofline(self) -> float | None:
        return None if not self.roofline else 100.0 * self.ours / self.roofline


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| metric | ours | transformers | ours / transformers | roofline | ours % of roofline | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.metric} ({r.unit}) | {_fmt(r.ours)} | {_fmt(r.theirs)} | "
            f"{_fmt(r.ratio)}x | {_fmt(r.roofline)} | {_fmt(r.pct_roofline, 0)}% | {r.note} |"
        )
    return "\n".join(lines)


def markdown_environment(env: Environment, load_after: str, peak_gb: float, command: str) -> str:
    dirty = ", ".join(env.dirty_engine_files) if env.dirty_engine_files else "none"
    return "\n".join([
        f"- date: {env.date}",
        f"- commit: `{env.commit}` (uncommitted edits in engine/model at run time: {dirty})",
        f"- machine: {env.cpu}, {env.num_cores} cores, {env.mem_total_gb:.1f} GiB RAM "
        f"({env.mem_available_gb:.1f} available at start); "
        f"torch {env.torch_version} with {env.num_threads} threads, transformers {env.transformers_version}",
        f"- load average (1/5/15 min) before: {env.load_before}; after: {load_after}",
        f"- peak RSS of the benchmark process: {peak_gb:.1f} GiB",
        f"- command: `{command}`",
    ])


__all__ = ["Environment", "Row", "capture_environment", "load_average", "markdown_environment", "markdown_table",
           "peak_rss_gb"]
