"""Inference benchmark: dispatches, weight bytes bound, KV bytes and host overhead per token.

    python benchmarks/bench_inference.py [model.bin] [--prompt-tokens 64] [--decode-tokens 8]

Without a model.bin it builds the tests' tiny random model (seed 0) in a temporary directory.
It runs on whichever device the runtime picks (GPTOSS_DEVICE): on a machine without an Apple GPU
that is the CPU execution layer, whose timings say nothing about GPU speed (it says so). Measured:
- dispatches per prefill chunk and per decoded token, from the device's dispatch trace (GPTOSS_TRACE);
- bytes of weights bound per decoded token: every weights-buffer argument is mapped to the tensor that
  starts at its offset (a MoE argument binds the block's whole section), against the minimum a
  decode step must read (dense tensors, the embedding row, the unembedding, and only the k active
  experts per block);
- KV-cache bytes per context token (fp16 and fp32 modes) and the fixed ring part;
- host time per decoded token spent encoding and in the sampler's host part, separate from
  commit + wait (the context's own counters, gptoss_context_get_host_timings).
It then computes the same per-token quantities analytically for the real gpt-oss-20b and -120b configs.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass

# name -> (blocks, experts, active, D, I, Hq, Hkv, head_dim, window, vocab rows, context)
REAL_CONFIGS = {
    "gpt-oss-20b": (24, 32, 4, 2880, 2880, 64, 8, 64, 128, 200014, 131072),
    "gpt-oss-120b": (36, 128, 4, 2880, 2880, 64, 8, 64, 128, 200014, 131072),
}


@dataclass
class Shape:
    blocks: int
    experts: int
    active: int
    dim: int
    mlp: int
    heads: int
    kv_heads: int
    head_dim: int
    window: int
    vocab: int
    context: int

    @property
    def expert_bytes(self) -> int:
        """One MXFP4 expert: mlp1 (2I x D) and mlp2 (D x I) at 17 bytes per 32 values, bf16 biases."""
        return 2 * self.mlp * (self.dim // 32) * 17 + 2 * 2 * self.mlp + self.dim * (self.mlp // 32) * 17 + 2 * self.dim

    @property
    def dense_block_bytes(self) -> int:
        qkv_rows = (self.heads + 2 * self.kv_heads) * self.head_dim
        return 2 * (self.dim + qkv_rows * self.dim + qkv_rows + self.heads + self.dim * self.heads * self.head_dim
                    + self.dim + self.dim + self.experts * self.dim + self.experts)

    def min_weight_bytes_per_token(self) -> int:
        """Weights a decode step must read once: dense blocks, k experts per block, embedding row, final norm, unembedding."""
        return (self.blocks * (self.dense_block_bytes + self.active * self.expert_bytes)
                + 2 * self.dim + 2 * self.dim + 2 * self.vocab * self.dim)

    def all_weight_bytes(self) -> int:
        """Decode binding every expert (what a kernel that reads the whole MoE section would touch)."""
        return (self.blocks * (self.dense_block_bytes + self.experts * self.expert_bytes)
                + 2 * self.dim + 2 * self.dim + 2 * self.vocab * self.dim)

    def kv_bytes_per_token(self, element: int) -> int:
        full_blocks = self.blocks // 2
        return full_blocks * 2 * self.kv_heads * self.head_dim * element

    def kv_ring_bytes(self, element: int, batch: int) -> int:
        sliding = (self.blocks + 1) // 2
        return sliding * 2 * (self.window + batch) * self.kv_heads * self.head_dim * element


def shape_of(header: dict) -> Shape:
    return Shape(header["num_blocks"], header["num_experts"], header["num_active_experts"], header["embedding_dim"],
                 header["mlp_dim"], header["num_heads"], header["num_kv_heads"], header["head_dim"],
                 header["attention_window"], header["num_text_tokens"] + header["num_special_tokens"],
                 header["context_length"])


def read_trace(path: str, start: int) -> tuple[list[dict], int]:
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()], start + len(data)


class WeightMap:
    """Maps a weights-buffer binding (offset) to the bytes of the tensor or MoE section starting there."""

    def __init__(self, model) -> None:
        layout = model.layout
        base = layout["weights_offset"]
        self.by_offset: dict[int, tuple[str, int]] = {}
        for name, (offset, size) in layout["tensors"].items():
            if ".expert." not in name:
                self.by_offset[offset - base] = (name, size)
        header = model.header
        section = header["num_experts"] * layout["expert_size"]
        for block, offset in enumerate(layout["moe_offsets"]):
            self.by_offset[offset - base] = (f"block.{block}.moe", section)
        self.weights_end = layout["file_size"] - base  # weights-buffer args end at (page-rounded) this

    def bound_bytes(self, dispatches: list[dict]) -> tuple[int, int, int]:
        """(dense bytes bound, MoE-section bindings, embedding bytes bound) over the dispatches.

        A tensor bound twice by one dispatch (e.g. a placeholder for an absent bias) counts once."""
        dense, moe, embedding = 0, 0, 0
        for d in dispatches:
            seen = set()
            for arg in d["args"]:
                if "buffer" not in arg or arg["offset"] in seen:
                    continue
                end = arg["offset"] + arg["size"]
                if end >= self.weights_end and end - self.weights_end < 1 << 16 and arg["offset"] in self.by_offset:
                    seen.add(arg["offset"])
                    name, size = self.by_offset[arg["offset"]]
                    if name.endswith(".moe"):
                        moe += 1
                    elif name == "embedding":
                        embedding += size
                    else:
                        dense += size
        return dense, moe, embedding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", help="model.bin (default: the tests' tiny random model)")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--decode-tokens", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64, help="max_batch_tokens (prefill chunk)")
    args = parser.parse_args()

    trace_file = tempfile.NamedTemporaryFile(prefix="gptoss-trace-", suffix=".jsonl", delete=False)
    trace_file.close()
    os.environ["GPTOSS_TRACE"] = trace_file.name  # read by the device when the model creates it
    tmp = None
    path = args.model
    if path is None:
        from gpt_oss_metal.convert import convert_checkpoint
        from gpt_oss_metal.testing.checkpoints import write_checkpoint

        tmp = tempfile.TemporaryDirectory(prefix="gptoss-bench-")
        checkpoint = write_checkpoint(os.path.join(tmp.name, "original"), layout="original", seed=0)
        path = os.path.join(tmp.name, "model.bin")
        convert_checkpoint(str(checkpoint), path, progress=False)

    from gpt_oss_metal import Context, Model
    from gpt_oss_metal._metal import Device

    model = Model(path)
    info = Device().info
    shape = shape_of(model.header)
    kind = str(info.get("kind", "?"))
    print(f"model: {path}\ndevice: {info.get('name', kind)} ({kind})")
    if "cpu" in kind.lower():
        print("NOTE: no Apple GPU here: kernels run on the CPU execution layer (~70 ns per MSL thread); "
              "times below are not GPU times. Dispatch and byte counts are those a GPU would see.")

    import numpy as np

    rng = np.random.default_rng(0)
    prompt = rng.integers(0, 199_998, size=args.prompt_tokens).tolist()
    ctx = Context(model, context_length=min(shape.context, 4096), max_batch_tokens=args.batch)
    _, offset = read_trace(trace_file.name, 0)
    ctx.append(prompt)
    t0 = time.perf_counter()
    ctx.process()
    prefill_seconds = time.perf_counter() - t0
    prefill, offset = read_trace(trace_file.name, offset)
    chunks = -(-args.prompt_tokens // args.batch)
    timings0 = ctx.host_timings()

    weights = WeightMap(model)
    per_token = []
    t0 = time.perf_counter()
    for _ in range(args.decode_tokens):
        ctx.sample(max_output_tokens=1, temperature=0.0)
        dispatches, offset = read_trace(trace_file.name, offset)
        per_token.append(dispatches)
    decode_seconds = time.perf_counter() - t0
    timings1 = ctx.host_timings()
    # The first sample only samples (the prompt is processed); later ones also run the sampled token.
    steady = per_token[1:] or per_token
    dispatches_per_token = sum(len(d) for d in steady) / len(steady)
    dense_bound, moe_bindings, embedding_bound = weights.bound_bytes(steady[-1])
    # A MoE binding exposes the block's whole section, the embedding binding the whole table; the
    # kernels read the k routed experts of a section and one embedding row per token.
    bound_per_token = dense_bound + embedding_bound + moe_bindings * shape.experts * shape.expert_bytes
    read_per_token = dense_bound + 2 * shape.dim + moe_bindings * shape.active * shape.expert_bytes
    kernels = collections.Counter(d["kernel"] for d in steady[-1])
    outside_blocks = kernels.get("gptoss_embeddings_bf16", 0) + 1 + sum(
        v for k, v in kernels.items() if k.startswith("gptoss_sampling"))  # embedding, unembedding, sampling
    per_block = (len(steady[-1]) - outside_blocks) / shape.blocks
    n = args.decode_tokens
    encode_us = (timings1["encode_ns"] - timings0["encode_ns"]) / n / 1e3
    finish_us = (timings1["finish_ns"] - timings0["finish_ns"]) / n / 1e3
    device_ms = (timings1["device_ns"] - timings0["device_ns"]) / n / 1e6

    rows = [
        ("prefill: tokens / chunks", f"{args.prompt_tokens} / {chunks}"),
        ("prefill: dispatches per chunk", f"{len(prefill) / chunks:.1f}"),
        ("prefill: wall time", f"{prefill_seconds:.2f} s ({args.prompt_tokens / prefill_seconds:.1f} tok/s)"),
        ("decode: dispatches per token", f"{dispatches_per_token:.1f} ({per_block:.2f} per block, "
                                         f"{outside_blocks} outside: embedding, unembedding, sampling)"),
        ("decode: weight bytes bound per token", f"{bound_per_token / 1e6:.2f} MB (MoE sections whole: "
                                                f"{moe_bindings} bindings of {shape.experts} experts, embedding table whole)"),
        ("decode: weight bytes the kernels read", f"{read_per_token / 1e6:.2f} MB (dense tensors, 1 embedding row, "
                                                 f"k routed experts)"),
        ("decode: minimum (active experts only)", f"{shape.min_weight_bytes_per_token() / 1e6:.2f} MB "
                                                 f"(read / minimum {read_per_token / shape.min_weight_bytes_per_token():.3f})"),
        ("decode: host encode per token", f"{encode_us:.0f} us"),
        ("decode: host sampling finish per token", f"{finish_us:.0f} us"),
        ("decode: commit+wait per token", f"{device_ms:.1f} ms"),
        ("decode: wall time per token", f"{decode_seconds / n * 1e3:.1f} ms"),
        ("KV bytes per context token (fp16 / fp32)", f"{shape.kv_bytes_per_token(2)} / {shape.kv_bytes_per_token(4)}"),
        ("KV ring bytes, fixed (fp16, batch)", f"{shape.kv_ring_bytes(2, args.batch)}"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\nmeasured on this model")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print("  kernels of one decode step: " + ", ".join(f"{k} x{v}" for k, v in sorted(kernels.items())))

    print("\nanalytic, real configs (per decoded token; dispatches from this build's per-block count)")
    for name, cfg in REAL_CONFIGS.items():
        s = Shape(*cfg)
        print(f"  {name}: min weight bytes {s.min_weight_bytes_per_token() / 1e9:.2f} GB/token "
              f"(all experts would be {s.all_weight_bytes() / 1e9:.1f} GB); "
              f"dispatches {outside_blocks + s.blocks * per_block:.0f}; "
              f"KV {s.kv_bytes_per_token(2) / 1024:.0f} KiB/token fp16 "
              f"(+ {s.kv_ring_bytes(2, args.batch) / 2**20:.1f} MiB rings at batch {args.batch})")
    os.unlink(trace_file.name)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
