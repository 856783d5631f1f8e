#!/usr/bin/env bash
# The one prepared script for a lent GPU (device tool): CUDA correctness tests, then the real 4B config in bf16 on
# random weights: batch-1 decode and batched throughput of our engine vs the measured HBM-bandwidth roofline.
# On the device machine, from the repo root:  bash benchmarks/gpu_check.sh   (results also under $OUT when set)
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -m pytest -q -m gpu -p no:cacheprovider tests/engine/test_cuda.py 2>&1 | tee "$out/gpu_tests.log"
python - <<'PY' 2>&1 | tee "$out/gpu_bench.txt"
import time, torch
from qwen35.engine.build import build_engine
from qwen35.engine.request import SamplingParams

buf = torch.empty(2**30, dtype=torch.uint8, device="cuda")  # 1 GiB read-bandwidth probe
for _ in range(3): buf.sum(dtype=torch.int64)
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(20): buf.sum(dtype=torch.int64)
torch.cuda.synchronize(); bandwidth = 20 * buf.numel() / (time.perf_counter() - t)
del buf
engine = build_engine("Qwen/Qwen3.5-4B", dummy_weights=True, dtype="bfloat16", device="cuda", max_num_seqs=64,
                      max_model_len=8192, progress=False)
weight_bytes = sum(p.numel() * p.element_size() for p in engine.runner.model.parameters())
print(f"bandwidth {bandwidth/1e9:.0f} GB/s, weights {weight_bytes/1e9:.2f} GB, decode roofline "
      f"{bandwidth/weight_bytes:.0f} tok/s")
def run(batch, prompt_len, new):
    for i in range(batch):
        engine.add_request(f"r{batch}-{i}", [(7 * i + j) % 240000 for j in range(prompt_len)],
                           SamplingParams(max_tokens=new, temperature=0, ignore_eos=True))
    torch.cuda.synchronize(); t = time.perf_counter(); first = None
    while engine.has_unfinished():
        engine.step()
        first = first or time.perf_counter()
    torch.cuda.synchronize(); end = time.perf_counter()
    return batch * (new - 1) / (end - first), first - t
run(1, 16, 4)  # warm-up
for batch in (1, 16, 64):
    tps, ttft = run(batch, 128, 64)
    print(f"batch {batch}: {tps:.1f} generated tok/s after the first step ({ttft*1e3:.0f} ms first step); "
          f"batch-1 roofline {bandwidth/weight_bytes:.0f} tok/s")
PY
