"""Checkpoint -> model.bin conversion: layouts, header values, weight conventions, errors, streaming."""

from __future__ import annotations

import filecmp
import json
import math
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from gpt_oss_metal import model_bin
from gpt_oss_metal.convert import (
    ConversionError,
    convert_checkpoint,
    dequantize_mxfp4,
    header_for_config,
    quantize_mxfp4,
    tokenizer_section,
)
from gpt_oss_metal.errors import GptOssError
from gpt_oss_metal.model_bin import bf16_to_f32, f32_to_bf16
from gpt_oss_metal.testing.checkpoints import TinyConfig, generate_weights, write_safetensors
from gpt_oss_metal.vocab import O200K_PATTERN

DATA = Path(__file__).parent / "data"
VOCAB = model_bin.NUM_TEXT_TOKENS + model_bin.NUM_SPECIAL_TOKENS  # 200014


@pytest.fixture(scope="module")
def canonical() -> dict[str, np.ndarray]:
    """The seed-0 tiny model's weights as generated (independent of any checkpoint reader)."""
    return generate_weights(TinyConfig(), seed=0)


@pytest.fixture(scope="module")
def model(tiny_model_bin: Path) -> model_bin.ModelBin:
    return model_bin.read_model_bin(str(tiny_model_bin))


# ------------------------------------------------------------------------------------------
# Layouts and file structure
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["hf-mxfp4", "hf-dense"])
def test_every_layout_gives_the_same_bytes(layout, tiny_checkpoints, tiny_model_bin, tmp_path):
    dst = tmp_path / "model.bin"
    convert_checkpoint(str(tiny_checkpoints[layout]), str(dst), progress=False)
    assert dst.stat().st_size == tiny_model_bin.stat().st_size
    assert filecmp.cmp(dst, tiny_model_bin, shallow=False), f"{layout} differs from the original layout"


def test_header_and_tokenizer_section(model, vocab):
    c = TinyConfig()
    h = model.header
    assert (h.num_blocks, h.num_experts, h.num_active_experts) == (c.num_blocks, c.num_experts, 4)
    assert (h.embedding_dim, h.mlp_dim, h.head_dim) == (c.hidden_size, c.intermediate_size, 64)
    assert (h.num_heads, h.num_kv_heads, h.attention_window) == (8, 1, c.sliding_window)
    assert h.context_length == 131072 and h.swiglu_limit == 7.0 and h.rope_theta == 150000.0
    assert (model.num_special_tokens, model.num_text_tokens) == (16, 199998)
    assert model.regex == O200K_PATTERN
    assert model.token_bytes == list(vocab)
    # Every named special token has its UUID in its own slot; the rest are unnamed.
    for text, token_id in model_bin.SPECIAL_TOKEN_IDS.items():
        if text in model_bin.SPECIAL_TOKEN_UUIDS:
            assert model.special_token_uuids[token_id - 199998] == model_bin.SPECIAL_TOKEN_UUIDS[text]
            assert model.special_token_id(text) == token_id
    assert sum(u is not None for u in model.special_token_uuids) == len(model_bin.SPECIAL_TOKEN_UUIDS)
    raw = Path(model.path).read_bytes()[: model.layout.weights_offset]
    assert raw[model.layout.regex_offset + len(O200K_PATTERN)] == 0  # the regex keeps its NUL
    tokens_end = model.layout.tokens_offset + len(tokenizer_section()[2])
    assert set(raw[tokens_end:]) <= {0}  # zero padding up to the 16 KiB-aligned weights
    assert model.layout.weights_offset % 16384 == 0
    assert all(off % 16384 == 0 for off in model.layout.moe_offsets)
    assert os.path.getsize(model.path) == model.layout.file_size


def _released_header(name: str) -> model_bin.ModelHeader:
    return header_for_config(json.loads((DATA / name).read_text()))


@pytest.mark.parametrize(
    "config, blocks, experts",
    [("gpt-oss-20b-original-config.json", 24, 32), ("gpt-oss-20b-hf-config.json", 24, 32),
     ("gpt-oss-120b-original-config.json", 36, 128)],
)
def test_header_of_released_models(config, blocks, experts):
    h = _released_header(config)
    assert (h.num_blocks, h.num_experts, h.num_active_experts) == (blocks, experts, 4)
    assert (h.embedding_dim, h.mlp_dim, h.head_dim, h.num_heads, h.num_kv_heads) == (2880, 2880, 64, 64, 8)
    assert h.attention_window == 128 and h.context_length == 131072
    assert h.interpolation_scale == 1 / 32
    # The doc gives 6 decimals; the file stores f32 (7 significant digits), so 1e-6 absolute.
    assert h.yarn_offset == pytest.approx(-0.869701, abs=1e-6)
    assert h.yarn_scale == pytest.approx(0.107466, abs=1e-6)
    assert h.yarn_multiplier == pytest.approx(1.346574, abs=1e-6)
    assert h.rmsnorm_epsilon == float(np.float32(1e-5)) and h.rope_theta == 150000.0 and h.swiglu_limit == 7.0
    layout = model_bin.compute_layout(h, 16, 199998, len(O200K_PATTERN) + 1, 1000)
    assert layout.expert_size == 13_236_480
    assert layout.moe_offsets[1] - layout.moe_offsets[0] == model_bin.align_up(experts * 13_236_480, 16384)


# ------------------------------------------------------------------------------------------
# Conventions, recomputed in NumPy from the generated weights
# ------------------------------------------------------------------------------------------


def test_embeddings_drop_rows_beyond_the_vocabulary(model, canonical):
    for ours, theirs in (("embedding", "embedding.weight"), ("unembedding", "unembedding.weight")):
        assert canonical[theirs].shape[0] == 201088
        assert model.tensor(ours).shape == (VOCAB, 160)
        np.testing.assert_array_equal(model.tensor(ours), canonical[theirs][:VOCAB])


def test_qkv_rows_interleaved_and_scaled(model, canonical):
    d = 64
    for n in range(TinyConfig().num_blocks):
        for part in ("weight", "bias"):
            src = bf16_to_f32(canonical[f"block.{n}.attn.qkv.{part}"])
            got = model.tensor_f32(f"block.{n}.qkv_{part}")
            expected = src.copy()
            for head, scale in [(h, 0.5) for h in range(8)] + [(8, 0.25)]:  # 8 Q heads, then the K head
                base = head * d
                for j in range(d // 2):
                    expected[base + 2 * j] = src[base + j] * scale
                    expected[base + 2 * j + 1] = src[base + d // 2 + j] * scale
            # V rows (the last 64) are untouched. Scaling bf16 by a power of two is exact, so
            # the stored bf16 must equal the recomputed value bit for bit.
            np.testing.assert_array_equal(model.tensor(f"block.{n}.qkv_{part}"), f32_to_bf16(expected))
            np.testing.assert_array_equal(got[9 * d :], src[9 * d :])


def test_other_dense_tensors_copied(model, canonical):
    pairs = {"attn_norm": "attn.norm.scale", "sinks": "attn.sinks", "out_weight": "attn.out.weight",
             "out_bias": "attn.out.bias", "mlp_norm": "mlp.norm.scale", "gate_weight": "mlp.gate.weight",
             "gate_bias": "mlp.gate.bias"}
    for n in range(TinyConfig().num_blocks):
        for ours, theirs in pairs.items():
            np.testing.assert_array_equal(model.tensor(f"block.{n}.{ours}"), canonical[f"block.{n}.{theirs}"])
    np.testing.assert_array_equal(model.tensor("final_norm"), canonical["norm.scale"])


def test_experts_blocks_scales_offset_and_biases(model, canonical):
    for n in range(TinyConfig().num_blocks):
        for e in range(TinyConfig().num_experts):
            x, b = f"block.{n}.expert.{e}", f"block.{n}.mlp"
            for k in (1, 2):
                np.testing.assert_array_equal(model.tensor(f"{x}.mlp{k}_blocks"), canonical[f"{b}.mlp{k}_weight.blocks"][e])
                np.testing.assert_array_equal(
                    model.tensor(f"{x}.mlp{k}_scales").astype(int), canonical[f"{b}.mlp{k}_weight.scales"][e].astype(int) + 14
                )
                np.testing.assert_array_equal(model.tensor(f"{x}.mlp{k}_bias"), canonical[f"{b}.mlp{k}_bias"][e])


def test_mlp1_rows_alternate_gate_and_linear(model, tiny_checkpoints):
    """Against the HF dense checkpoint read by safetensors/torch: even rows = gate columns, odd = up."""
    import torch
    from safetensors.torch import load_file

    directory = tiny_checkpoints["hf-dense"]
    weight_map = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    for n in (0, TinyConfig().num_blocks - 1):
        x = f"model.layers.{n}.mlp.experts"
        shard = load_file(str(directory / weight_map[f"{x}.gate_up_proj"]))
        gate_up = shard[f"{x}.gate_up_proj"].to(torch.float32).numpy()  # [E, D, 2I]
        bias = shard[f"{x}.gate_up_proj_bias"].to(torch.float32).numpy()
        for e in (0, 17, 31):
            stored = dequantize_mxfp4(model.tensor(f"block.{n}.expert.{e}.mlp1_blocks"),
                                      model.tensor(f"block.{n}.expert.{e}.mlp1_scales") - np.uint8(14))
            np.testing.assert_array_equal(stored[0::2], gate_up[e][:, 0::2].T)  # gate
            np.testing.assert_array_equal(stored[1::2], gate_up[e][:, 1::2].T)  # linear
            stored_bias = model.tensor_f32(f"block.{n}.expert.{e}.mlp1_bias")
            np.testing.assert_array_equal(stored_bias[0::2], bias[e][0::2])


# ------------------------------------------------------------------------------------------
# MXFP4 quantization rule
# ------------------------------------------------------------------------------------------


def _reference_quantize(row: np.ndarray) -> tuple[list[int], int]:
    """Slow scalar rule: e = ceil(log2(amax/6)) by search; nearest magnitude, ties to the even code."""
    magnitudes = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    amax = float(np.max(np.abs(row)))
    e = 0
    if amax > 0:
        e = -130
        while 6.0 * 2.0**e < amax:
            e += 1
    codes = []
    for v in row:
        y = abs(float(v)) / 2.0**e
        best = min(range(8), key=lambda c: (abs(magnitudes[c] - y), c % 2))
        codes.append(best | (8 if math.copysign(1.0, float(v)) < 0 else 0))
    return codes, e + 127


def test_quantize_matches_scalar_rule_including_ties():
    rng = np.random.default_rng(1)
    rows = [rng.standard_normal(32).astype(np.float32) * 0.05 for _ in range(50)]
    ties = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 4, dtype=np.float32) * np.float32(2.0**-5)
    rows += [ties, -ties, np.zeros(32, np.float32), np.full(32, 6.0 * 2.0**-7 * 1.0000001, np.float32)]
    signed_zero = np.zeros(32, np.float32)
    signed_zero[3] = -0.0
    signed_zero[0] = 1.0
    rows.append(signed_zero)
    blocks, scales = quantize_mxfp4(np.stack(rows))
    for r, row in enumerate(rows):
        codes, scale = _reference_quantize(row)
        assert int(scales[r, 0]) == scale, f"row {r}"
        got = [int(b >> (4 * (i % 2))) & 15 for i, b in enumerate(np.repeat(blocks[r, 0], 2))]
        assert got == codes, f"row {r}"


def test_quantize_round_trips_pinned_blocks():
    blocks = np.random.default_rng(2).integers(0, 256, size=(7, 3, 16), dtype=np.uint8)
    blocks[..., 0] = (blocks[..., 0] & 0xF0) | 0x7  # element 0 of every block is +6
    scales = np.random.default_rng(3).integers(100, 140, size=(7, 3), dtype=np.uint8)
    again_blocks, again_scales = quantize_mxfp4(dequantize_mxfp4(blocks, scales))
    np.testing.assert_array_equal(again_blocks, blocks)
    np.testing.assert_array_equal(again_scales, scales)


# ------------------------------------------------------------------------------------------
# Cross-check with Hugging Face transformers
# ------------------------------------------------------------------------------------------


def test_transformers_loads_hf_checkpoints_identically(tiny_checkpoints):
    """hf-dense loads with no missing/unexpected keys and runs; transformers' own CPU dequantization
    of hf-mxfp4 gives exactly the hf-dense parameters (an independent check of nibble order and scales)."""
    import torch
    from transformers import GptOssForCausalLM, Mxfp4Config

    dense, info = GptOssForCausalLM.from_pretrained(
        str(tiny_checkpoints["hf-dense"]), dtype=torch.float32, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    quant, info = GptOssForCausalLM.from_pretrained(
        str(tiny_checkpoints["hf-mxfp4"]), dtype=torch.float32, output_loading_info=True,
        quantization_config=Mxfp4Config(dequantize=True),
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    quant_params = dict(quant.named_parameters())
    for name, p in dense.named_parameters():
        assert torch.equal(p, quant_params[name]), name
    ids = torch.tensor([[1, 200006, 9000, 42, 7, 199999, 5, 3]])
    with torch.no_grad():
        logits = dense(ids).logits
    assert logits.shape == (1, 8, 201088) and bool(torch.isfinite(logits).all())
    assert 0.05 < float(logits.std()) < 5.0  # well-behaved magnitudes, neither vanishing nor exploding


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------

SMALL = TinyConfig(num_blocks=2, num_experts=4, hidden_size=64, intermediate_size=32)


def _write_original(directory: Path, tensors: dict, config: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_safetensors(str(directory / "a.safetensors"), dict(list(tensors.items())[: len(tensors) // 2]))
    write_safetensors(str(directory / "b.safetensors"), dict(list(tensors.items())[len(tensors) // 2 :]))
    (directory / "config.json").write_text(json.dumps(config or SMALL.original_config()))
    return directory


@pytest.fixture(scope="module")
def small_weights() -> dict[str, np.ndarray]:
    return generate_weights(SMALL, seed=5)


def _expect_error(src: Path, dst: Path, *fragments: str) -> ConversionError:
    with pytest.raises(ConversionError) as info:
        convert_checkpoint(str(src), str(dst), progress=False)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, GptOssError) and isinstance(info.value, ValueError)
    return info.value


def test_small_checkpoint_converts(small_weights, tmp_path):
    m = convert_checkpoint(str(_write_original(tmp_path / "ck", small_weights)), str(tmp_path / "m.bin"), progress=False)
    assert m.header.embedding_dim == 64 and m.header.num_experts == 4


def test_missing_tensor(small_weights, tmp_path):
    tensors = {k: v for k, v in small_weights.items() if k != "block.1.mlp.mlp2_bias"}
    _expect_error(_write_original(tmp_path / "ck", tensors), tmp_path / "m.bin",
                  "missing tensors block.1.mlp.mlp2_bias", "a.safetensors", "b.safetensors")


def test_wrong_shape(small_weights, tmp_path):
    tensors = dict(small_weights)
    tensors["block.0.attn.sinks"] = np.zeros(9, np.uint16)
    _expect_error(_write_original(tmp_path / "ck", tensors), tmp_path / "m.bin",
                  "block.0.attn.sinks", "expected shape [8]", "got [9]")


def test_head_dim_128(small_weights, tmp_path):
    config = dict(SMALL.original_config(), head_dim=128)
    _expect_error(_write_original(tmp_path / "ck", small_weights, config), tmp_path / "m.bin", "head_dim 128")


def test_unknown_layout(tmp_path):
    ck = _write_original(tmp_path / "ck", {"encoder.weight": np.zeros((4, 4), np.uint16)})
    _expect_error(ck, tmp_path / "m.bin", "unknown checkpoint layout", "encoder.weight")


def test_bad_config(small_weights, tmp_path):
    config = SMALL.original_config()
    del config["hidden_size"]
    _expect_error(_write_original(tmp_path / "ck", small_weights, config), tmp_path / "m.bin", "hidden_size")
    config = dict(SMALL.original_config(), intermediate_size=40)
    _expect_error(_write_original(tmp_path / "ck2", small_weights, config), tmp_path / "m.bin", "intermediate_size 40")


def test_failure_midway_leaves_nothing_and_keeps_existing_dst(small_weights, tmp_path):
    # An out-of-range scale in the LAST block's experts is only seen after everything before
    # it (tokenizer, dense weights, earlier MoE sections) has been written to the temporary file.
    tensors = dict(small_weights)
    scales = tensors["block.1.mlp.mlp2_weight.scales"].copy()
    scales[3, 5, 0] = 250
    tensors["block.1.mlp.mlp2_weight.scales"] = scales
    ck = _write_original(tmp_path / "ck", tensors)
    out = tmp_path / "out"
    out.mkdir()
    _expect_error(ck, out / "model.bin", "block.1.mlp.mlp2_weight.scales[3]", "250")
    assert list(out.iterdir()) == []
    (out / "model.bin").write_bytes(b"previous model")
    _expect_error(ck, out / "model.bin", "250")
    assert [p.name for p in out.iterdir()] == ["model.bin"]
    assert (out / "model.bin").read_bytes() == b"previous model"


def test_interrupted_conversion_leaves_nothing(small_weights, tmp_path, monkeypatch):
    import gpt_oss_metal.convert as convert

    ck = _write_original(tmp_path / "ck", small_weights)
    out = tmp_path / "out"
    out.mkdir()
    calls = {"n": 0}
    real = convert._OriginalCheckpoint.expert

    def interrupted(self, n, e):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, n, e)

    monkeypatch.setattr(convert._OriginalCheckpoint, "expert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(str(ck), str(out / "model.bin"), progress=False)
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------------------------------
# Streaming
# ------------------------------------------------------------------------------------------


def test_conversion_streams(tiny_checkpoints, tmp_path):
    """Peak traced Python memory stays well below the largest single tensor.

    The tiny checkpoint is ~130 MB, almost all of it the two 201088x160 bf16 embedding tables
    (61 MiB each). A converter that loads the model, or even one whole embedding table, exceeds
    the bound of half the largest tensor (31 MiB). A streaming one holds a 4 MiB chunk of rows,
    one layer's QKV in float32 and one expert at a time, plus fixed costs of the vocabulary that do not grow with the model: building the 1.3 MB token table and the final
    re-read with model_bin.read_model_bin, which parses 199998 token strings (~11 MiB). Measured
    peak: 13-18 MiB. tracemalloc sees NumPy's buffers (checked first); memory-mapped checkpoint
    pages are page cache, not traced. The ranks are loaded before measuring (cached per process).
    """
    tokenizer_section()
    largest = 201088 * 160 * 2
    tracemalloc.start()
    try:
        probe = np.ones(largest // 2, np.uint16)
        assert tracemalloc.get_traced_memory()[1] >= probe.nbytes  # NumPy allocations are traced
        del probe
        tracemalloc.reset_peak()
        convert_checkpoint(str(tiny_checkpoints["original"]), str(tmp_path / "m.bin"), progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < largest / 2, f"peak {peak / 2**20:.1f} MiB"


def test_transformers5_rope_parameters_config():
    """Configs saved by transformers >= 5 carry rope_parameters instead of rope_theta + rope_scaling."""
    legacy = json.loads((DATA / "gpt-oss-20b-hf-config.json").read_text())
    modern = {k: v for k, v in legacy.items() if k not in ("rope_theta", "rope_scaling", "initial_context_length")}
    modern["rope_parameters"] = dict(legacy["rope_scaling"], rope_theta=150000.0)
    assert header_for_config(modern).pack() == header_for_config(legacy).pack()
    modern["rope_parameters"]["rope_type"] = "linear"
    with pytest.raises(ConversionError, match="rope_scaling type 'linear'"):
        header_for_config(modern)


def test_command_line(small_weights, tmp_path):
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "scripts" / "create-local-model.py"
    ck = _write_original(tmp_path / "ck", small_weights)
    done = subprocess.run([sys.executable, str(script), "-s", str(ck), "-d", str(tmp_path / "m.bin"), "--no-progress"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert model_bin.read_model_bin(str(tmp_path / "m.bin")).header.num_experts == SMALL.num_experts
    done = subprocess.run([sys.executable, str(script), "-s", str(tmp_path), "-d", str(tmp_path / "x.bin")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "config.json" in done.stderr and not (tmp_path / "x.bin").exists()
