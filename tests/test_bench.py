"""`qwen35 bench` end to end on the tiny checkpoint: every row measured, roofline from this run's bandwidth."""

from __future__ import annotations

import re

from qwen35.cli import main


def test_bench_prints_prefill_and_each_batch(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bench.md"
    code = main(["bench", "--model", str(tiny_checkpoint), "--quantization", "int8", "--batches", "1,3",
                 "--prefill-len", "20", "--new-tokens", "3", "--buffer-gb", "0.05", "--max-model-len", "256",
                 "--rounds", "2", "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert text in capsys.readouterr().out
    assert "int8 (rest float32)" in text
    bandwidth = float(re.search(r"read bandwidth measured in this run ([\d.]+) GB/s", text).group(1))
    assert bandwidth > 0
    rows = {m.group(1): (float(m.group(2)), m.group(3)) for m in
            re.finditer(r"^\| (prefill, 20-token prompt|decode, batch \d+) \| ([\d.]+) \| ([\d.-]+) \|", text, re.M)}
    assert set(rows) == {"prefill, 20-token prompt", "decode, batch 1", "decode, batch 3"}
    assert all(rate > 0 for rate, _ in rows.values())
    assert float(rows["decode, batch 3"][1]) > float(rows["decode, batch 1"][1]) > 0  # roofline scales with b
    batch3 = re.search(r"^\| decode, batch 3 \|.*$", text, re.M).group(0)
    assert "median of 2 rounds" in batch3 and re.search(r"[\d.]+x our batch 1 \(median of per-round ratios\)", batch3)
