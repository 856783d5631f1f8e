"""Compile (once) and load the CPU kernel library `cpu_quant.cpp` through ctypes.

Owns the compiler call, the on-disk cache (`$QWEN35_CACHE_DIR` or `$XDG_CACHE_HOME/qwen35` or `~/.cache/qwen35`,
under `kernels/<hash of source and flags>/`) and the decision whether the compiled path is usable here (x86-64 with
AVX2, FMA and F16C, a C++ compiler, `QWEN35_KERNELS` not `0`/`torch`). Imports torch only (loaded first so the library
shares torch's OpenMP runtime). `use_vnni()` says whether the int8 / int4 products take the AVX512-VNNI variant (runtime
CPU check; `QWEN35_KERNELS=avx2` pins the AVX2 baseline). Invariant: `library()` returns a loaded library whose ABI matches, or None, in which
case every caller uses the pure-torch twin; it never raises.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import torch  # loads torch's libgomp before ours, so both use one OpenMP runtime

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("cpu_quant.cpp")
_FLAGS = ["-O3", "-std=c++17", "-mavx2", "-mfma", "-mf16c", "-ffp-contract=off", "-fopenmp", "-pthread", "-fPIC",
          "-shared"]
_ABI = 8
_P = ctypes.c_void_p
_I = ctypes.c_int64
_SIGNATURES: dict[str, list[type]] = {
    "qwen35_quantize_act": [_P, _I, _I, _P, _P, _P],
    "qwen35_q8_gemm": [_P, _P, _I, _I, _P, _P, _I, _P],
    "qwen35_q4_gemm": [_P, _P, _P, _I, _I, _P, _P, _I, _P],
    "qwen35_bf16_gemm": [_P, _I, _I, _P, _I, _P],
    "qwen35_bf16_gemm_avx512": [_P, _I, _I, _P, _I, _P],
    "qwen35_rmsnorm": [_P, _I, _I, _P, ctypes.c_float, _P],
    "qwen35_q8_dequant": [_P, _P, _I, _I, _I, _P],
    "qwen35_act_corrections": [_P, _I, _I, ctypes.c_int32, _P],
    "qwen35_act_group_sums": [_P, _I, _I, _P],
    "qwen35_quantize_weight": [_P, _I, _I, ctypes.c_int32, _P, _P],
    "qwen35_gdn_recurrent": [_P, _P, _I, _I, _I, _I, _P, _P, _P, _P, _P, _P],
    "qwen35_conv_step": [_P, _P, _I, _I, _I, _P, _P, _P],
    "qwen35_paged_attn_decode": [_P, _P, _P, _I, _P, _I, _P, _I, _I, _I, _I, _I, ctypes.c_float, _P],
    "qwen35_gdn_decode": [_P, _I, _P, _I, _P, _P, _I, _I, _I, _I, _I, _I, _P, _P, _I, _P, _P, _P, _P, _P,
                          ctypes.c_float, _P, _I],
    "qwen35_q8_gemm_tiled": [_P, _P, _P, _I, _I, _P, _P, _I, _P],
    "qwen35_q4_gemm_tiled": [_P, _P, _P, _I, _I, _P, _P, _I, _P],
    "qwen35_tiled_dequant": [_P, _P, _I, _I, _I, ctypes.c_int32, _P],
    "qwen35_q8_gemm_vnni": [_P, _P, _P, _I, _I, _P, _P, _I, _P],
    "qwen35_q4_gemm_vnni": [_P, _P, _P, _I, _I, _P, _P, _I, _P],
    "qwen35_q4_dequant": [_P, _P, _I, _I, _I, _P],
}


def cache_dir() -> Path:
    root = os.environ.get("QWEN35_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "qwen35"


def cpu_supported() -> bool:
    """x86-64 Linux with AVX2, FMA and F16C (read from /proc/cpuinfo)."""
    if platform.machine() not in ("x86_64", "AMD64") or not sys.platform.startswith("linux"):
        return False
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    have = set(flags.split(":", 1)[1].split())
    return {"avx2", "fma", "f16c"} <= have


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _compile(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"qwen35: compiling CPU kernels ({compiler}) into {target.parent} (once, a few seconds)...",
          file=sys.stderr, flush=True)
    # Build next to the target and rename: concurrent first uses never load a half-written file.
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        subprocess.run([compiler, *_FLAGS, str(_SOURCE), "-o", str(partial)], check=True, capture_output=True,
                       text=True, timeout=300)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if lib.qwen35_kernels_abi() != _ABI:
        raise OSError(f"{path}: kernel ABI mismatch")
    for name, args in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = None
    lib.qwen35_read_bytes.argtypes = [_P, _I]
    lib.qwen35_read_bytes.restype = ctypes.c_uint64
    lib.qwen35_set_threads.argtypes = [ctypes.c_int32]
    lib.qwen35_set_threads.restype = None
    lib.qwen35_set_threads(torch.get_num_threads())  # the same count as torch's intra-op threads
    return lib


@cache
def use_vnni() -> bool:
    """Whether the int8 / int4 products take the AVX512-VNNI variant (the CPU has it and `QWEN35_KERNELS` is not
    `avx2`, which pins the AVX2 baseline)."""
    lib = library()
    return lib is not None and os.environ.get("QWEN35_KERNELS", "").lower() != "avx2" and bool(lib.qwen35_has_vnni())


@cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use; None when disabled, unsupported or the build fails."""
    if os.environ.get("QWEN35_KERNELS", "").lower() in ("0", "torch", "off"):
        return None
    if not cpu_supported():
        return None
    compiler = _compiler()
    source = _SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join([*_FLAGS, compiler or ""]).encode()).hexdigest()[:16]
    target = cache_dir() / "kernels" / digest / "libqwen35_cpu.so"
    try:
        if not target.is_file():
            if compiler is None:
                log.warning("no C++ compiler found: using the pure-torch kernel twins (slower)")
                return None
            _compile(compiler, target)
        return _load(target)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        log.warning("CPU kernels unavailable, using the pure-torch twins: %s", str(detail)[-2000:])
        return None
