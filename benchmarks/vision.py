"""Vision cost on CPU: image tokens/s through the vision tower and time to first token for one image.

Builds our engine on the real Qwen3.5-4B config with dummy weights (vision tower included; fp32 by default,
~18 GB RAM) and a random 1024 x 768 PNG; times (1) the image processor (decode, smart-resize, patches), (2) the
vision tower alone over the image (3,072 patches -> 768 tokens), and (3) time to first token of a chat request
with the image and a short question (processor + vision + prefill of the whole prompt, max_tokens 1).
Prints a Markdown table with date, commit and machine. Benchmark code: imported by nothing, not a test.

    python benchmarks/vision.py            # the real 4B config, ~3-5 min on 2 cores
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import capture_environment, load_average, peak_rss_gb  # noqa: E402

from qwen35.engine.args import EngineArgs  # noqa: E402
from qwen35.engine.build import build_engine  # noqa: E402
from qwen35.engine.request import SamplingParams  # noqa: E402
from qwen35.processor import load_processor  # noqa: E402
from qwen35.processor.media import expand_media  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="Qwen/Qwen3.5-4B")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    env = capture_environment(args.threads)
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()

    t0 = time.perf_counter()
    engine = build_engine(EngineArgs(model=args.model, dummy_weights=True, dtype=args.dtype, max_model_len=4096,
                                     max_num_seqs=2, max_num_batched_tokens=1024, progress=False))
    load_s = time.perf_counter() - t0
    processor = load_processor(None)
    vision = processor.vision
    assert vision is not None

    t0 = time.perf_counter()
    image = vision.image(data)
    process_s = time.perf_counter() - t0
    num_tokens = image.patches.shape[0] // 4
    model = engine.runner.model
    patches = torch.from_numpy(image.patches)
    model.encode_media(patches[:64], [(1, 8, 8)])  # warm-up
    t0 = time.perf_counter()
    model.encode_media(patches, [image.grid])
    tower_s = time.perf_counter() - t0

    content = [{"type": "image"}, {"type": "text", "text": "Describe this picture."}]
    t0 = time.perf_counter()
    ids = processor.encode_chat([{"role": "user", "content": content}], enable_thinking=False)
    ids, media = expand_media(ids, [vision.image(data)], [], processor.special_ids, processor.tokenizer)
    engine.add_request("ttft", ids, SamplingParams(max_tokens=1, temperature=0), media)
    while engine.has_unfinished():
        engine.step()
    ttft_s = time.perf_counter() - t0

    print(f"\n{env.date} · commit {env.commit} · {env.cpu} · {env.num_cores} cores · {args.threads} threads · "
          f"torch {env.torch_version} · {args.dtype} · load before {env.load_before}, after {load_average()} · "
          f"peak RSS {peak_rss_gb():.1f} GB · model load {load_s:.0f} s\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| image | {args.width} x {args.height} PNG, {len(data) / 1e6:.2f} MB -> grid {image.grid}, "
          f"{num_tokens} tokens |")
    print(f"| image processor (decode, resize, patches) | {process_s * 1000:.0f} ms |")
    print(f"| vision tower alone | {tower_s:.2f} s = {num_tokens / tower_s:.0f} image tokens/s "
          f"({image.patches.shape[0] / tower_s:.0f} patches/s) |")
    print(f"| time to first token (prompt {len(ids)} tokens: processor + tower + prefill) | {ttft_s:.1f} s |")


if __name__ == "__main__":
    main()
