"""Throughput benchmark for a Mac: prefill and decode tokens/s, peak memory, decode bandwidth share.

    python benchmarks/bench_mac.py [model.bin] [--prompt-lengths 128,512,2048] [--decode-tokens 64]
                                   [--bandwidth GB/s] [--gguf model.gguf] [--mlx-model PATH_OR_REPO]

Without a model.bin it uses the tiny random demo model (gpt_oss_metal.testing.demo). For each prompt
length it measures one prefill (append + process) and a greedy decode of --decode-tokens tokens, on
a fresh context. Decode bandwidth share = (bytes a decode step must read / seconds per token) / the
chip's memory bandwidth: the bytes are the weights one token touches (dense blocks, the k active
experts, embedding row, unembedding) plus the KV cache read at that context length — a lower bound
on traffic, so the share is a lower bound too. Chip bandwidths are Apple's published figures.

With --gguf (llama.cpp's llama-bench on PATH) or --mlx-model (the mlx_lm package installed) it also
runs those for a side-by-side; each is skipped with a note when missing. On a machine without an Apple
GPU everything runs on the CPU execution layer, and the output says so: those times are not GPU times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_inference import shape_of  # noqa: E402  (the model-shape arithmetic is shared)

# Apple's published unified-memory bandwidth, GB/s (10^9 bytes/s). The longest matching name wins,
# so "M3 Max" is not read as "M3". Where a chip came in two bandwidth bins (M3 Max 30-core GPU:
# 300 GB/s, M4 Max 32-core GPU: 410 GB/s) the table has the full-chip figure: pass --bandwidth.
CHIP_BANDWIDTH_GBPS = {
    "M1": 68, "M1 Pro": 200, "M1 Max": 400, "M1 Ultra": 800,
    "M2": 100, "M2 Pro": 200, "M2 Max": 400, "M2 Ultra": 800,
    "M3": 100, "M3 Pro": 150, "M3 Max": 400, "M3 Ultra": 819,
    "M4": 120, "M4 Pro": 273, "M4 Max": 546,
}


def chip_bandwidth(name: str) -> tuple[str, float] | None:
    """(chip, GB/s) for a device or CPU name such as "Apple M1 Pro"; None if no chip matches."""
    words = name.replace("Apple", " ").split()
    best = None
    for chip, gbps in CHIP_BANDWIDTH_GBPS.items():
        parts = chip.split()
        for i in range(len(words) - len(parts) + 1):
            if words[i:i + len(parts)] == parts and (best is None or len(parts) > len(best[0].split())):
                best = (chip, float(gbps))
    return best


def peak_rss_bytes() -> int:
    """The process's peak resident set: ru_maxrss is bytes on macOS, KiB on Linux."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024


@dataclass
class Run:
    prompt_tokens: int
    prefill_s: float
    decode_tokens: int
    decode_s: float
    decode_bytes_per_token: int


def measure(model, shape, prompt_tokens: int, decode_tokens: int, batch: int) -> Run:
    import numpy as np

    from gpt_oss_metal import Context

    rng = np.random.default_rng(prompt_tokens)
    context_length = min(model.max_context_length, prompt_tokens + decode_tokens + 1)
    ctx = Context(model, context_length=context_length, max_batch_tokens=batch)
    # Ordinary text tokens only (ids below the special tokens of o200k_harmony).
    ctx.append(rng.integers(0, min(shape.vocab, 199_998), size=prompt_tokens).tolist())
    t0 = time.perf_counter()
    ctx.process()
    t1 = time.perf_counter()
    produced = len(ctx.sample(max_output_tokens=decode_tokens, temperature=0.0))
    t2 = time.perf_counter()
    # KV read per decode step at the mean position: full-attention blocks read every cached token,
    # sliding-window blocks at most `window` tokens (fp16 cache, the default).
    mean_position = prompt_tokens + produced / 2
    full_blocks, sliding_blocks = shape.blocks // 2, (shape.blocks + 1) // 2
    per_token_per_block = 2 * shape.kv_heads * shape.head_dim * 2
    kv_bytes = int(per_token_per_block * (full_blocks * mean_position + sliding_blocks * min(mean_position, shape.window)))
    return Run(prompt_tokens, t1 - t0, produced, t2 - t1, shape.min_weight_bytes_per_token() + kv_bytes)


def side_by_side(args: argparse.Namespace) -> None:
    print("\nside-by-side")
    llama_bench = shutil.which("llama-bench")
    if args.gguf is None or llama_bench is None:
        print("  llama.cpp: skipped (" + ("pass --gguf model.gguf" if args.gguf is None else "llama-bench not on PATH") + ")")
    else:
        prompts = ",".join(str(n) for n in args.prompt_lengths)
        command = [llama_bench, "-m", args.gguf, "-p", prompts, "-n", str(args.decode_tokens), "-o", "json"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"  llama.cpp: failed ({' '.join(command)}): {result.stderr.strip()[-400:]}")
        else:
            for row in json.loads(result.stdout):
                kind = "prefill" if row.get("n_prompt", 0) else "decode"
                print(f"  llama.cpp {kind:7s} p={row.get('n_prompt', 0):5d} n={row.get('n_gen', 0):4d}: {row.get('avg_ts', 0):8.1f} tok/s")
    try:
        import mlx_lm  # noqa: F401
        have_mlx = True
    except ImportError:
        have_mlx = False
    if args.mlx_model is None or not have_mlx:
        print("  mlx_lm: skipped (" + ("pass --mlx-model PATH_OR_REPO" if args.mlx_model is None else "mlx_lm is not installed") + ")")
    else:
        command = [sys.executable, "-m", "mlx_lm.generate", "--model", args.mlx_model, "--prompt", "hello " * args.prompt_lengths[0],
                   "--max-tokens", str(args.decode_tokens)]
        result = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in (result.stdout + result.stderr).splitlines() if "tokens-per-sec" in line or "Peak memory" in line]
        print("  mlx_lm: " + ("; ".join(lines) if lines else f"no timing lines (exit {result.returncode})"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="model.bin (default: the tiny random demo model)")
    parser.add_argument("--prompt-lengths", type=lambda s: [int(x) for x in s.split(",")], default=[128, 512, 2048])
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=0, help="max tokens per command buffer (0: the runtime's default)")
    parser.add_argument("--bandwidth", type=float, help="the chip's memory bandwidth in GB/s (needed for unknown chips)")
    parser.add_argument("--gguf", help="a GGUF of the same model for llama.cpp's llama-bench")
    parser.add_argument("--mlx-model", help="an MLX model (path or Hugging Face repo) for mlx_lm")
    args = parser.parse_args(argv)

    from gpt_oss_metal import Model
    from gpt_oss_metal import _metal
    from gpt_oss_metal._metal import Device

    if not hasattr(_metal, "Context"):
        print("this build of gpt_oss_metal has no inference Context (_metal.Context): rebuild with the "
              "inference layer to benchmark", file=sys.stderr)
        return 2

    path = args.model
    if path is None:
        from gpt_oss_metal.testing.demo import default_demo_model
        path = default_demo_model()
    model = Model(path)
    shape = shape_of(model.header)
    info = Device().info
    on_gpu = info.get("kind") == "metal"
    print(f"model: {path}\ndevice: {info.get('name')} ({info.get('kind')})")
    if not on_gpu:
        print("NOTE: no Apple GPU: the kernels run on the CPU execution layer. These numbers measure that "
              "layer, not a GPU; the bandwidth share below is meaningless here.")
    lengths = [n for n in args.prompt_lengths if n + args.decode_tokens < model.max_context_length]
    if lengths != args.prompt_lengths:
        print(f"(prompt lengths above the model's context of {model.max_context_length} tokens skipped)")

    bandwidth = args.bandwidth
    chip = None
    if bandwidth is None and on_gpu:
        match = chip_bandwidth(str(info.get("name", "")))
        if match is None:
            print(f"unknown chip '{info.get('name')}': pass --bandwidth GB/s for the bandwidth share", file=sys.stderr)
            return 2
        chip, bandwidth = match
    rss_before = peak_rss_bytes()
    print(f"\n{'prompt':>7} {'prefill tok/s':>14} {'decode tok/s':>13} {'ms/token':>9} {'GB/token':>9} {'bandwidth':>10}")
    for length in lengths:
        run = measure(model, shape, length, args.decode_tokens, args.batch)
        per_token = run.decode_s / max(run.decode_tokens, 1)
        share = ""
        if bandwidth:
            share = f"{100 * run.decode_bytes_per_token / per_token / (bandwidth * 1e9):9.1f}%"
        print(f"{length:7d} {length / run.prefill_s:14.1f} {run.decode_tokens / run.decode_s:13.1f} "
              f"{1e3 * per_token:9.2f} {run.decode_bytes_per_token / 1e9:9.3f} {share:>10}")
    if bandwidth:
        print(f"(bandwidth share against {bandwidth:.0f} GB/s{' for ' + chip if chip else ''})")
    weights = os.path.getsize(path)
    print(f"\npeak process RSS: {peak_rss_bytes() / 2**30:.2f} GiB (before the runs: {rss_before / 2**30:.2f} GiB); "
          f"model file (mapped, wrapped by the device without a copy): {weights / 2**30:.2f} GiB")
    print("device allocated size: not reported by this build (the device interface does not expose "
          "MTLDevice.currentAllocatedSize yet)")
    side_by_side(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
