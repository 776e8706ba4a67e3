"""Small random gpt-oss checkpoints for tests, deterministic from a seed.

One seed describes one model; it can be written in three layouts:

* ``original``  — the released ``original/`` folder layout (MXFP4 experts);
* ``hf-mxfp4``  — Hugging Face transformers names, MXFP4 experts, ``quantization_config``;
* ``hf-dense``  — Hugging Face transformers names, experts as bf16 ``gate_up_proj``/``down_proj``
  holding the exact dequantized MXFP4 values.

Every 32-value MXFP4 block contains an element of magnitude 6·2^e (code 7 or 15), so quantizing the
dense experts again (gpt_oss_metal.convert.quantize_mxfp4) gives back the same bytes: all three
layouts convert to byte-identical model.bin files.

Command line::

    python -m gpt_oss_metal.testing.checkpoints --layout original --seed 0 -o DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import struct
import sys
import tempfile
from typing import Iterable, Mapping

import numpy as np

from ..convert import dequantize_mxfp4
from ..model_bin import MXFP4_BLOCK, f32_to_bf16

__all__ = ["TinyConfig", "LAYOUTS", "generate_weights", "write_checkpoint", "create_model_bin", "write_safetensors"]

LAYOUTS = ("original", "hf-mxfp4", "hf-dense")


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    """Dimensions of a test model. Defaults: a tiny gpt-oss with the real vocabulary and attention shape."""

    num_blocks: int = 4  # even blocks sliding-window, odd blocks full attention
    num_experts: int = 32
    experts_per_token: int = 4
    vocab_size: int = 201088  # rows of the checkpoint's embedding tables (model.bin keeps 200014)
    hidden_size: int = 160  # a multiple of 32 that is not a power of two
    intermediate_size: int = 96
    head_dim: int = 64
    num_attention_heads: int = 8
    num_key_value_heads: int = 1
    sliding_window: int = 32
    initial_context_length: int = 4096
    rope_theta: float = 150000.0
    rope_scaling_factor: float = 32.0
    rope_ntk_alpha: float = 1.0
    rope_ntk_beta: float = 32.0
    swiglu_limit: float = 7.0

    def original_config(self) -> dict:
        """config.json of the original layout."""
        return {
            "num_hidden_layers": self.num_blocks,
            "num_experts": self.num_experts,
            "experts_per_token": self.experts_per_token,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "swiglu_limit": self.swiglu_limit,
            "head_dim": self.head_dim,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "sliding_window": self.sliding_window,
            "initial_context_length": self.initial_context_length,
            "rope_theta": self.rope_theta,
            "rope_scaling_factor": self.rope_scaling_factor,
            "rope_ntk_alpha": self.rope_ntk_alpha,
            "rope_ntk_beta": self.rope_ntk_beta,
        }

    def hf_config(self, quantized: bool) -> dict:
        """config.json of the Hugging Face layout (as in the released repositories)."""
        config = {
            "architectures": ["GptOssForCausalLM"],
            "model_type": "gpt_oss",
            "attention_bias": True,
            "attention_dropout": 0.0,
            "eos_token_id": 200002,
            "pad_token_id": 199999,
            "experts_per_token": self.experts_per_token,
            "num_experts_per_tok": self.experts_per_token,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initial_context_length": self.initial_context_length,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "layer_types": [
                "sliding_attention" if n % 2 == 0 else "full_attention" for n in range(self.num_blocks)
            ],
            "max_position_embeddings": int(self.initial_context_length * self.rope_scaling_factor),
            "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_blocks,
            "num_key_value_heads": self.num_key_value_heads,
            "num_local_experts": self.num_experts,
            "output_router_logits": False,
            "rms_norm_eps": 1e-05,
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": self.rope_scaling_factor,
                "beta_fast": self.rope_ntk_beta,
                "beta_slow": self.rope_ntk_alpha,
                "truncate": False,
                "original_max_position_embeddings": self.initial_context_length,
            },
            "rope_theta": self.rope_theta,
            "router_aux_loss_coef": 0.9,
            "sliding_window": self.sliding_window,
            "swiglu_limit": self.swiglu_limit,
            "tie_word_embeddings": False,
            "torch_dtype": "bfloat16",
            "use_cache": True,
            "vocab_size": self.vocab_size,
        }
        if quantized:
            config["quantization_config"] = {
                "quant_method": "mxfp4",
                "modules_to_not_convert": [
                    "model.layers.*.self_attn",
                    "model.layers.*.mlp.router",
                    "model.embed_tokens",
                    "lm_head",
                ],
            }
        return config


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


def _bf16(values: np.ndarray) -> np.ndarray:
    return f32_to_bf16(values.astype(np.float32))


def _random_mxfp4(rng: np.random.Generator, rows: int, k: int, experts: int) -> tuple[np.ndarray, np.ndarray]:
    """MXFP4 tensors [E, rows, k/32, 16] + scales [E, rows, k/32] with values of magnitude ~0.01-0.1.

    Each block gets exponent e in {-8, -7, -6} (max magnitude 6·2^e = 0.023..0.094), random codes,
    and one element forced to ±6·2^e so the block's amax pins e under re-quantization.
    """
    nblocks = k // MXFP4_BLOCK
    codes = rng.integers(0, 16, size=(experts, rows, nblocks, MXFP4_BLOCK), dtype=np.uint8)
    pinned = rng.integers(0, MXFP4_BLOCK, size=(experts, rows, nblocks))
    sign = rng.integers(0, 2, size=(experts, rows, nblocks), dtype=np.uint8) << 3
    np.put_along_axis(codes, pinned[..., None], (7 | sign)[..., None], axis=-1)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    scales = (127 + rng.integers(-8, -5, size=(experts, rows, nblocks))).astype(np.uint8)
    return blocks, scales


def generate_weights(config: TinyConfig = TinyConfig(), seed: int = 0) -> dict[str, np.ndarray]:
    """The canonical weights, named as in the original layout. Dense tensors are bf16 bits (uint16)."""
    c = config
    rng = np.random.default_rng(seed)
    d, i, e = c.hidden_size, c.intermediate_size, c.num_experts
    qkv_rows = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim

    def normal(shape: Iterable[int], std: float, mean: float = 0.0) -> np.ndarray:
        return _bf16(mean + std * rng.standard_normal(tuple(shape), dtype=np.float32))

    w: dict[str, np.ndarray] = {"embedding.weight": normal((c.vocab_size, d), 0.05)}
    for n in range(c.num_blocks):
        b = f"block.{n}"
        w[f"{b}.attn.norm.scale"] = normal((d,), 0.1, 1.0)
        w[f"{b}.attn.qkv.weight"] = normal((qkv_rows, d), 0.05)
        w[f"{b}.attn.qkv.bias"] = normal((qkv_rows,), 0.02)
        w[f"{b}.attn.sinks"] = normal((c.num_attention_heads,), 1.0)
        w[f"{b}.attn.out.weight"] = normal((d, c.num_attention_heads * c.head_dim), 0.03)
        w[f"{b}.attn.out.bias"] = normal((d,), 0.02)
        w[f"{b}.mlp.norm.scale"] = normal((d,), 0.1, 1.0)
        w[f"{b}.mlp.gate.weight"] = normal((e, d), 0.05)
        w[f"{b}.mlp.gate.bias"] = normal((e,), 0.02)
        w[f"{b}.mlp.mlp1_weight.blocks"], w[f"{b}.mlp.mlp1_weight.scales"] = _random_mxfp4(rng, 2 * i, d, e)
        w[f"{b}.mlp.mlp1_bias"] = normal((e, 2 * i), 0.02)
        w[f"{b}.mlp.mlp2_weight.blocks"], w[f"{b}.mlp.mlp2_weight.scales"] = _random_mxfp4(rng, d, i, e)
        w[f"{b}.mlp.mlp2_bias"] = normal((e, d), 0.02)
    w["norm.scale"] = normal((d,), 0.1, 1.0)
    w["unembedding.weight"] = normal((c.vocab_size, d), 0.05)
    return w


def _hf_tensors(config: TinyConfig, w: Mapping[str, np.ndarray], quantized: bool) -> dict[str, np.ndarray]:
    c = config
    q_rows, kv_rows = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    out = {"model.embed_tokens.weight": w["embedding.weight"]}
    for n in range(c.num_blocks):
        b, a, m = f"block.{n}", f"model.layers.{n}.self_attn", f"model.layers.{n}.mlp"
        qkv_w, qkv_b = w[f"{b}.attn.qkv.weight"], w[f"{b}.attn.qkv.bias"]
        bounds = {"q": (0, q_rows), "k": (q_rows, q_rows + kv_rows), "v": (q_rows + kv_rows, q_rows + 2 * kv_rows)}
        out[f"model.layers.{n}.input_layernorm.weight"] = w[f"{b}.attn.norm.scale"]
        for p, (lo, hi) in bounds.items():
            out[f"{a}.{p}_proj.weight"] = qkv_w[lo:hi]
            out[f"{a}.{p}_proj.bias"] = qkv_b[lo:hi]
        out[f"{a}.sinks"] = w[f"{b}.attn.sinks"]
        out[f"{a}.o_proj.weight"] = w[f"{b}.attn.out.weight"]
        out[f"{a}.o_proj.bias"] = w[f"{b}.attn.out.bias"]
        out[f"model.layers.{n}.post_attention_layernorm.weight"] = w[f"{b}.mlp.norm.scale"]
        out[f"{m}.router.weight"] = w[f"{b}.mlp.gate.weight"]
        out[f"{m}.router.bias"] = w[f"{b}.mlp.gate.bias"]
        x = f"{m}.experts"
        if quantized:
            out[f"{x}.gate_up_proj_blocks"] = w[f"{b}.mlp.mlp1_weight.blocks"]
            out[f"{x}.gate_up_proj_scales"] = w[f"{b}.mlp.mlp1_weight.scales"]
            out[f"{x}.down_proj_blocks"] = w[f"{b}.mlp.mlp2_weight.blocks"]
            out[f"{x}.down_proj_scales"] = w[f"{b}.mlp.mlp2_weight.scales"]
        else:
            # Exact in bf16: e2m1 values have 2 significant bits and the exponents are small.
            mlp1 = dequantize_mxfp4(w[f"{b}.mlp.mlp1_weight.blocks"], w[f"{b}.mlp.mlp1_weight.scales"])
            mlp2 = dequantize_mxfp4(w[f"{b}.mlp.mlp2_weight.blocks"], w[f"{b}.mlp.mlp2_weight.scales"])
            out[f"{x}.gate_up_proj"] = _bf16(np.ascontiguousarray(mlp1.transpose(0, 2, 1)))  # [E, D, 2I]
            out[f"{x}.down_proj"] = _bf16(np.ascontiguousarray(mlp2.transpose(0, 2, 1)))  # [E, I, D]
        out[f"{x}.gate_up_proj_bias"] = w[f"{b}.mlp.mlp1_bias"]
        out[f"{x}.down_proj_bias"] = w[f"{b}.mlp.mlp2_bias"]
    out["model.norm.weight"] = w["norm.scale"]
    out["lm_head.weight"] = w["unembedding.weight"]
    return out


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    """Write a .safetensors file. uint16 arrays are stored as BF16 bits, uint8 as U8, float32 as F32."""
    dtypes = {np.dtype(np.uint16): "BF16", np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32",
              np.dtype(np.float16): "F16"}
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, array in tensors.items():
        header[name] = {"dtype": dtypes[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for array in tensors.values():
            f.write(memoryview(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)).cast("B"))


def _split_in_two(tensors: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Two shards of about equal size, in name order (so every layout really is sharded)."""
    names = list(tensors)
    total = sum(t.nbytes for t in tensors.values())
    first: dict[str, np.ndarray] = {}
    size = 0
    for name in names:
        if size >= total / 2:
            break
        first[name] = tensors[name]
        size += tensors[name].nbytes
    second = {name: tensors[name] for name in names if name not in first}
    return [first, second]


def write_checkpoint(directory: str, layout: str = "original", seed: int = 0, config: TinyConfig | None = None) -> str:
    """Write a random checkpoint in ``layout`` into ``directory`` (created if needed); returns it."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    config = config or TinyConfig()
    os.makedirs(directory, exist_ok=True)
    weights = generate_weights(config, seed)
    if layout == "original":
        tensors = weights
        config_json = config.original_config()
    else:
        tensors = _hf_tensors(config, weights, quantized=(layout == "hf-mxfp4"))
        config_json = config.hf_config(quantized=(layout == "hf-mxfp4"))
    del weights
    shards = _split_in_two(tensors)
    weight_map: dict[str, str] = {}
    for k, shard in enumerate(shards):
        if layout == "original":
            filename = f"model-{k:05d}.safetensors"
        else:
            filename = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(os.path.join(directory, filename), shard, {"format": "pt"})
        weight_map.update({name: filename for name in shard})
    if layout != "original":
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
        with open(os.path.join(directory, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": 199998, "eos_token_id": [200002, 199999, 200012], "pad_token_id": 199999}, f)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config_json, f, indent=2)
    return directory


def create_model_bin(path: str, seed: int = 0, layout: str = "original", config: TinyConfig | None = None) -> str:
    """Write a random checkpoint to a temporary directory and convert it into the model.bin ``path``."""
    from ..convert import convert_checkpoint

    with tempfile.TemporaryDirectory(prefix="gpt-oss-tiny-") as tmp:
        write_checkpoint(tmp, layout=layout, seed=seed, config=config)
        convert_checkpoint(tmp, path, progress=False)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a small random gpt-oss checkpoint for tests.")
    parser.add_argument("--layout", choices=LAYOUTS, default="original")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True, help="checkpoint directory to create")
    parser.add_argument("--model-bin", help="also convert it into this model.bin")
    args = parser.parse_args(argv)
    write_checkpoint(args.output, layout=args.layout, seed=args.seed)
    if args.model_bin:
        from ..convert import convert_checkpoint

        convert_checkpoint(args.output, args.model_bin, progress=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
