"""The NumPy reference model (gpt_oss_metal.testing.reference) against transformers' GptOssForCausalLM.

Both sides compute in float32 from the same bf16/MXFP4 weights: transformers from the Hugging Face
dense layout, the reference from a model.bin converted from the ORIGINAL layout. Agreement therefore
proves the reference math and the converter's baked-in conventions (interleaved RoPE pairs, Q x0.5 /
K x0.25, scale + 14, gate/linear interleave) at once. See docs/reference-model.md for the tolerances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpt_oss_metal.model_bin import MXFP4_SCALE_OFFSET
from gpt_oss_metal.testing.reference import dequantize_mxfp4

# ----- MXFP4 ---------------------------------------------------------------------------------------


def _e2m1_from_spec(code: int) -> float:
    """e2m1: bit 3 sign, bits 2-1 exponent (bias 1), bit 0 mantissa; exponent 0 is subnormal (0 or 0.5)."""
    sign = -1.0 if code & 8 else 1.0
    exponent, mantissa = (code >> 1) & 3, code & 1
    magnitude = mantissa * 0.5 if exponent == 0 else (1.0 + mantissa / 2.0) * 2.0 ** (exponent - 1)
    return sign * magnitude


def _dequantize_scalar(blocks: np.ndarray, scales_stored: np.ndarray) -> np.ndarray:
    """Element by element, straight from docs/model-bin.md (slow, obviously right)."""
    rows, groups, _ = blocks.shape
    out = np.zeros((rows, groups * 32), dtype=np.float64)
    for r in range(rows):
        for g in range(groups):
            scale = math.ldexp(1.0, int(scales_stored[r, g]) - MXFP4_SCALE_OFFSET - 127)
            for i in range(32):
                byte = int(blocks[r, g, i // 2])
                code = byte & 0x0F if i % 2 == 0 else byte >> 4
                out[r, g * 32 + i] = _e2m1_from_spec(code) * scale
    return out


def test_mxfp4_matches_scalar_decoder_over_every_code_and_scale() -> None:
    rng = np.random.default_rng(1)
    # Every stored scale byte model.bin can hold (14..255, i.e. checkpoint s = 0..241), every byte value.
    stored = np.arange(MXFP4_SCALE_OFFSET, 256, dtype=np.uint8)
    blocks = rng.integers(0, 256, size=(len(stored), 1, 16), dtype=np.uint8)
    blocks[:16, 0, :] = np.arange(256, dtype=np.uint8).reshape(16, 16)  # all 256 byte values at least once
    scales = stored[:, None]
    got = dequantize_mxfp4(blocks, scales)
    assert got.dtype == np.float32 and got.shape == (len(stored), 32)
    want = _dequantize_scalar(blocks, scales)
    # Every value is exactly representable in float32 (2 significant bits, exponents -142..118): exact equality.
    np.testing.assert_array_equal(got.astype(np.float64), want)
    assert np.all(np.signbit(got) == np.signbit(want))  # -0.0 codes keep their sign


def test_mxfp4_matches_transformers_convert_moe_packed_tensors() -> None:
    import torch
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    rng = np.random.default_rng(2)
    experts, rows, groups = 3, 10, 4
    blocks = rng.integers(0, 256, size=(experts, rows, groups, 16), dtype=np.uint8)
    checkpoint_scales = rng.integers(100, 140, size=(experts, rows, groups), dtype=np.uint8)  # E8M0, bias 127
    ours = dequantize_mxfp4(blocks, checkpoint_scales + MXFP4_SCALE_OFFSET)  # [E, rows, groups*32]
    theirs = convert_moe_packed_tensors(
        torch.from_numpy(blocks), torch.from_numpy(checkpoint_scales), dtype=torch.float32
    ).numpy()  # transformers returns input-major [E, groups*32, rows]
    assert theirs.shape == (experts, groups * 32, rows)
    np.testing.assert_array_equal(ours, theirs.transpose(0, 2, 1))


def test_mxfp4_rejects_bad_input() -> None:
    blocks = np.zeros((2, 1, 16), np.uint8)
    with pytest.raises(ValueError, match="stored scale"):
        dequantize_mxfp4(blocks, np.array([[13], [127]], np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        dequantize_mxfp4(blocks, np.zeros((2, 2), np.uint8) + 20)
    with pytest.raises(TypeError):
        dequantize_mxfp4(blocks.astype(np.int16), np.zeros((2, 1), np.uint8) + 20)


# ----- whole model against transformers ----------------------------------------------------------

# Varied English, numbers, punctuation and Python, wrapped in harmony special tokens, so the prompt
# exercises special-token rows too. It tokenizes to well over 300 tokens (asserted below), ten times
# the tiny model's 32-token sliding window.
PROMPT = (
    "<|start|>system<|message|>You are a careful assistant. Knowledge cutoff: 2024-06.<|end|>"
    "<|start|>user<|message|>"
    "In the spring of 1887, a surveyor named Ada Whitcombe walked the length of the Severn estuary with "
    "a brass theodolite, a notebook and, by her own account, \"far too few biscuits\". Her measurements, "
    "published two years later, disagreed with the Admiralty charts by as much as 340 yards; the "
    "Admiralty, naturally, assumed she was wrong. She was not. Tides there rise 14.5 m - the second "
    "highest range on Earth - and the sandbanks move every winter.\n\n"
    "Could you explain why the following function is slow, and rewrite it?\n\n"
    "```python\n"
    "def moving_average(values: list[float], window: int = 7) -> list[float]:\n"
    "    result = []\n"
    "    for i in range(len(values)):\n"
    "        lo = max(0, i - window + 1)\n"
    "        chunk = values[lo : i + 1]\n"
    "        result.append(sum(chunk) / len(chunk))  # O(n * window)\n"
    "    return result\n"
    "\n"
    "print(moving_average([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], window=3))\n"
    "```\n\n"
    "Also: what is 2**32 - 1, and does 0.1 + 0.2 == 0.3 hold in IEEE-754 doubles? "
    "Answer briefly; une réponse en français est bienvenue aussi. Merci! 🙂<|end|>"
    "<|start|>assistant<|channel|>analysis<|message|>The loop recomputes each window sum from scratch; "
    "a running total (add the new value, subtract the one leaving) makes it O(n). 2**32 - 1 = 4294967295. "
    "0.1 + 0.2 gives 0.30000000000000004, so the comparison is False.<|end|>"
)

# float32 unit roundoff.
U32 = 2.0**-24


def _per_position(a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """max_v |a - b| per position, in units of that position's scale (e.g. the logit std)."""
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).max(axis=-1) / scale


def _top_k_sets(logits: np.ndarray, k: int) -> np.ndarray:
    """[.., k] sorted expert indices of the top-k logits, ties to the lowest index."""
    order = np.argsort(-logits, axis=-1, kind="stable")[..., :k]
    return np.sort(order, axis=-1)


Routing = tuple  # (logits [T, V], experts [L, T, k], router logits [L, T, E], margins [L, T])


def _routing_of(logits: np.ndarray, trace) -> Routing:
    return (logits, trace.experts(), np.stack([b.router_logits for b in trace.blocks]), trace.router_margins())


def _flips(experts_a: np.ndarray, experts_b: np.ndarray) -> list[tuple[int, int]]:
    """(block, position) where two runs selected different expert sets."""
    differ = (np.sort(experts_a, axis=-1) != np.sort(experts_b, axis=-1)).any(axis=-1)
    return [(int(b), int(p)) for b, p in zip(*np.nonzero(differ))]


def _align_routing(run, target_experts: np.ndarray, target_router: np.ndarray, what: str):
    """Run `run(override)` until its expert choices equal the target's, accepting a different choice
    only where it is provably a rounding effect at a near tie.

    Top-k is discontinuous, so two correct float32 runs may choose differently where the k-th and
    (k+1)-th router logits nearly tie, and such a flip moves that position by ~1 std and, through
    attention, later positions too. Blocks are settled in order: at the earliest block with a
    difference all earlier choices agree, so its router logits are uncontaminated; each flip there must
    have a margin below 10x the router-logit difference (a rounding flip needs margin < 2x). Then that
    block follows the target's choice and the run is repeated. Returns (routing of the final run,
    override used, accepted flips as (block, position, margin))."""
    override: dict[int, np.ndarray] = {}
    accepted: list[tuple[int, int, float]] = []
    for _ in range(target_experts.shape[0] + 1):
        result = run(override or None)
        _, experts, router, margins = result
        flips = _flips(experts, target_experts)
        if not flips:
            return result, override, accepted
        block = min(b for b, _ in flips)
        error = float(np.abs(router[block] - target_router[block]).max())
        for b, pos in flips:
            if b != block:
                continue
            assert margins[b, pos] < 10 * error, (
                f"{what}: block {b} position {pos} chose other experts although the router margin "
                f"{margins[b, pos]:.3g} is far above the router-logit difference {error:.3g}: a defect, not rounding"
            )
            accepted.append((b, pos, float(margins[b, pos])))
        override[block] = target_experts[block]
    raise AssertionError(f"{what}: expert choices did not converge")


class Parity:
    """Everything the parity tests share: transformers' run and the reference runs on one prompt."""

    def __init__(self, hf_dir, model_bin_path) -> None:
        import torch
        import transformers
        from gpt_oss_metal import vocab
        from gpt_oss_metal.model_bin import read_model_bin
        from gpt_oss_metal.testing.reference import ReferenceModel, Trace

        self.tokens = np.array(vocab.tiktoken_encoding("o200k_harmony").encode(PROMPT, allowed_special="all"))
        assert len(self.tokens) >= 300, len(self.tokens)
        self.model_bin = read_model_bin(str(model_bin_path))
        h = self.header = self.model_bin.header
        assert len(self.tokens) > 5 * h.attention_window

        model = transformers.GptOssForCausalLM.from_pretrained(
            str(hf_dir), dtype=torch.float32, attn_implementation="eager"
        ).eval()
        with torch.no_grad():
            out = model(
                input_ids=torch.from_numpy(self.tokens)[None],
                output_router_logits=True,
                output_hidden_states=True,
            )
        self.vocab_size = self.model_bin.num_text_tokens + self.model_bin.num_special_tokens
        # transformers keeps the checkpoint's 201088 rows; model.bin keeps the 200014 real ids.
        self.hf_logits = out.logits[0, :, : self.vocab_size].numpy()
        self.hf_router_logits = np.stack([r.numpy().reshape(len(self.tokens), -1) for r in out.router_logits])
        self.hf_experts = _top_k_sets(self.hf_router_logits, h.num_active_experts)
        # hidden_states[n + 1] is block n's output; the last entry has the final norm applied.
        self.hf_hidden = [s[0].numpy() for s in out.hidden_states]
        self.scale = self.hf_logits.std(axis=-1)

        self.ref32 = ReferenceModel(self.model_bin)
        self.ref64 = ReferenceModel(self.model_bin, dtype=np.float64)

        last_trace: dict[int, Trace] = {}

        def runner(ref: ReferenceModel):
            def run(override):
                trace = Trace()
                logits = ref.forward(self.tokens, trace, override)
                last_trace[id(ref)] = trace
                return _routing_of(logits, trace)

            return run

        # The reference follows transformers' expert choices where (and only where) they differ at a
        # near tie; the natural, unforced choices are kept for the report.
        self.natural32 = runner(self.ref32)(None)
        (self.logits32, _, _, _), self.override32, self.accepted32 = _align_routing(
            runner(self.ref32), self.hf_experts, self.hf_router_logits, "transformers vs reference"
        )
        self.trace32 = last_trace[id(self.ref32)]
        (self.logits64, _, _, _), _, self.accepted64 = _align_routing(
            runner(self.ref64), self.trace32.experts(), np.stack([b.router_logits for b in self.trace32.blocks]),
            "float64 vs float32 reference",
        )
        self.trace64 = last_trace[id(self.ref64)]

        # Tolerance, calibrated on this model and prompt (docs/reference-model.md): eps32 is how far a
        # float32 evaluation of the same math lands from the float64 one. transformers is another
        # float32 evaluation (same operations, other summation order and angle rounding), so
        # |HF - ref32| <= |HF - exact| + |ref32 - exact| is expected near 2 eps32; 4 eps32 leaves
        # headroom for the two orders not having identical error distributions.
        self.eps32 = float(_per_position(self.logits32, self.logits64, self.scale).max())
        self.tolerance = 4 * self.eps32
        # A priori estimate of eps32 from the arithmetic: a float32 dot product of n terms carries a
        # relative rounding error of about sqrt(n) u (random-sign accumulation, u = 2^-24); a logit
        # passes through S = 6 rounded matmul stages per block (QKV, scores, weights.V, out, router,
        # expert up/down: the expert pair counted once with the router) plus the unembedding, and the
        # residual stream adds their independent errors: eps ~ sqrt(S) sqrt(n_max) u. RoPE angles
        # rounded to float32 (error <= p 2^-24 rad) were measured to change eps32 by < 1% on this model.
        n_max = max(h.embedding_dim, h.num_heads * h.head_dim, h.mlp_dim, len(self.tokens))
        stages = 6 * h.num_blocks + 1
        self.a_priori_estimate = math.sqrt(stages) * math.sqrt(n_max) * U32


@pytest.fixture(scope="module")
def parity(tiny_checkpoints, tiny_model_bin) -> Parity:
    return Parity(tiny_checkpoints["hf-dense"], tiny_model_bin)


def test_float32_rounding_matches_a_priori_estimate(parity: Parity) -> None:
    """The tolerance is only meaningful if float32 noise is as small as the arithmetic predicts."""
    print(f"\neps32 (ref float32 vs float64, max over positions, / logit std) = {parity.eps32:.3g}; "
          f"a priori estimate sqrt(S n) u = {parity.a_priori_estimate:.3g}; "
          f"float64-vs-float32 near-tie flips accepted: {parity.accepted64 or 'none'}")
    # Within 4x of the estimate: a larger eps32 would mean an unstable computation, and a tolerance
    # built on it would be too lenient.
    assert 0 < parity.eps32 <= 4 * parity.a_priori_estimate
    # The float64 reference also agrees with transformers at the float32 noise level.
    hf_vs_64 = _per_position(parity.hf_logits, parity.logits64, parity.scale).max()
    print(f"max |HF - ref64| / std = {hf_vs_64:.3g}")
    assert hf_vs_64 <= parity.tolerance


def test_logits_match_transformers_at_every_position(parity: Parity) -> None:
    p = parity
    natural_logits, natural_experts, natural_router, margins = p.natural32
    router_error = np.abs(p.hf_router_logits - natural_router).max(axis=(1, 2))
    natural = _per_position(p.hf_logits, natural_logits, p.scale)
    diff = _per_position(p.hf_logits, p.logits32, p.scale)
    near_tie = np.nonzero((margins < 10 * router_error[:, None]).any(axis=0))[0]
    lines = [
        f"\n{len(p.tokens)} tokens, tolerance {p.tolerance:.3g} x logit std (4 x eps32 = {p.eps32:.3g})",
        f"max |HF - ref32| / std: {natural.max():.3g} at position {int(natural.argmax())}; median {np.median(natural):.3g}",
        f"router-logit max |HF - ref32| per block: {', '.join(f'{e:.2g}' for e in router_error)}",
        f"expert choices that differ (block, position): {_flips(natural_experts, p.hf_experts) or 'none'}; "
        f"accepted as near ties (block, position, margin): {p.accepted32 or 'none'}",
        f"near-tie positions (margin < 10 x router difference): {len(near_tie)}",
    ]
    for pos in near_tie:
        block = int(margins[:, pos].argmin())
        lines.append(f"  position {pos}: block {block} margin {margins[block, pos]:.3g}, logit diff {natural[pos]:.3g}")
    if p.override32:
        lines.append(f"with transformers' choices in blocks {sorted(p.override32)}: max {diff.max():.3g}")
    print("\n".join(lines))
    # Every position is held to the tolerance (after following legitimate near-tie flips, if any).
    bad = np.nonzero(diff > p.tolerance)[0]
    assert bad.size == 0, f"positions {bad.tolist()[:20]} exceed {p.tolerance:.3g}: {diff[bad][:20]}"


def test_block_outputs_and_router_logits_match_transformers(parity: Parity) -> None:
    """Per-block intermediates localize a defect: residual after each block, router logits, final norm."""
    p = parity
    checks = []
    for n in range(p.header.num_blocks - 1):
        checks.append((f"block {n} output", p.hf_hidden[n + 1], p.trace32.blocks[n].output, p.trace64.blocks[n].output))
    checks.append(("final norm", p.hf_hidden[-1], p.trace32.final_norm, p.trace64.final_norm))
    for n in range(p.header.num_blocks):
        checks.append((f"block {n} router logits", p.hf_router_logits[n], p.trace32.blocks[n].router_logits,
                       p.trace64.blocks[n].router_logits))
    for name, hf, r32, r64 in checks:
        scale = hf.std(axis=-1)
        eps = _per_position(r32, r64, scale).max()
        # Same calibration as the logits; the floor covers quantities that float32 computes almost exactly.
        tolerance = 4 * eps + 16 * U32
        got = _per_position(hf, r32, scale).max()
        print(f"{name}: max |HF - ref32| / std = {got:.3g} (tolerance {tolerance:.3g})")
        assert got <= tolerance, name


def test_greedy_tokens_match_transformers(parity: Parity) -> None:
    p = parity
    hf_best, ref_best = p.hf_logits.argmax(axis=-1), p.logits32.argmax(axis=-1)
    ranked = np.sort(p.hf_logits, axis=-1)
    gap = (ranked[:, -1] - ranked[:, -2]) / p.scale
    print(f"\nsmallest top-2 gap / std: {gap.min():.3g} (tolerance {p.tolerance:.3g})")
    # The argmax can only legitimately differ where the top two logits are within the tolerance.
    assert gap.min() > 2 * p.tolerance, "a top-2 near tie makes this prompt unsuitable; pick another"
    mismatch = np.nonzero(hf_best != ref_best)[0]
    assert mismatch.size == 0, f"greedy tokens differ at positions {mismatch.tolist()}"


def _run_in_chunks(p: Parity, chunk: int):
    """A runner for _align_routing: the prompt appended `chunk` tokens per step to one KV cache."""
    from gpt_oss_metal.testing.reference import Trace

    def run(override):
        cache = p.ref32.new_cache()
        parts = []
        for start in range(0, len(p.tokens), chunk):
            trace = Trace()
            sliced = None if override is None else {n: e[start : start + chunk] for n, e in override.items()}
            parts.append(_routing_of(p.ref32.step(cache, p.tokens[start : start + chunk], trace, sliced), trace))
            assert cache.length == min(start + chunk, len(p.tokens))
        return (np.concatenate([x[0] for x in parts]),) + tuple(np.concatenate([x[i] for x in parts], axis=1) for i in (1, 2, 3))

    return run


def _check_chunked_equals_forward(p: Parity, chunk: int) -> None:
    # Different matmul shapes sum in a different order; only a near tie may flip a choice.
    (logits, _, _, _), _, accepted = _align_routing(
        _run_in_chunks(p, chunk), p.trace32.experts(), np.stack([b.router_logits for b in p.trace32.blocks]),
        f"chunks of {chunk} vs forward",
    )
    diff = _per_position(logits, p.logits32, p.scale)
    print(f"\nchunks of {chunk}: max |step - forward| / std = {diff.max():.3g}, near-tie flips {accepted or 'none'}")
    # Same code and precision, other BLAS kernels/orders for other row counts: float32 noise, <= tolerance.
    assert diff.max() <= p.tolerance


@pytest.mark.slow
def test_step_one_token_at_a_time_equals_forward(parity: Parity) -> None:
    _check_chunked_equals_forward(parity, 1)


def test_step_in_chunks_of_7_equals_forward(parity: Parity) -> None:
    _check_chunked_equals_forward(parity, 7)


FAULTS = ["ignore_sinks", "rope_half_split", "window_off_by_one", "drop_yarn_multiplier"]


@pytest.mark.parametrize("fault", FAULTS)
def test_negative_control_broken_reference_fails(parity: Parity, fault: str) -> None:
    """Each deliberately broken reference must miss transformers by far more than the tolerance."""
    from gpt_oss_metal.testing.reference import Faults, ReferenceModel

    p = parity
    broken = ReferenceModel(p.model_bin, faults=Faults(**{fault: True}))
    diff = _per_position(p.hf_logits, broken.forward(p.tokens), p.scale)
    print(f"\n{fault}: max |HF - broken| / std = {diff.max():.3g} (tolerance {p.tolerance:.3g})")
    assert diff.max() > 1000 * p.tolerance
    if fault == "window_off_by_one":
        # The extra key only exists once a position has more than W predecessors: earlier positions
        # must still agree, later ones must not — the comparison sees exactly where the window binds.
        w = p.header.attention_window
        assert diff[:w].max() <= p.tolerance
        assert np.median(diff[w:]) > 100 * p.tolerance


def test_fp16_kv_cache_rounds_entries_like_the_runtime(parity: Parity) -> None:
    from gpt_oss_metal.testing.reference import ReferenceModel, Trace

    p = parity
    h = p.header
    ref16 = ReferenceModel(p.model_bin, kv_dtype=np.float16)
    cache, trace = ref16.new_cache(), Trace()
    logits = ref16.step(cache, p.tokens, trace)
    q_rows, kv_rows = h.num_heads * h.head_dim, h.num_kv_heads * h.head_dim
    t = len(p.tokens)
    for n, block in enumerate(trace.blocks):
        keys, values = cache.read(n, 0, t, np.float32)
        want_k = block.qkv[:, q_rows : q_rows + kv_rows].reshape(t, h.num_kv_heads, h.head_dim).transpose(1, 0, 2)
        want_v = block.qkv[:, q_rows + kv_rows :].reshape(t, h.num_kv_heads, h.head_dim).transpose(1, 0, 2)
        np.testing.assert_array_equal(keys, want_k.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(values, want_v.astype(np.float16).astype(np.float32))
    natural = _per_position(logits, p.logits32, p.scale)
    assert natural.max() > p.tolerance  # the rounding is really applied

    # fp16 rounding is far larger than float32 noise, so near ties flip: accept only provable ones,
    # follow the fp32 choice there, and what remains is the effect of the rounding itself.
    def run(override):
        t16 = Trace()
        return _routing_of(ref16.forward(p.tokens, t16, override), t16)

    (aligned_logits, _, _, _), _, accepted = _align_routing(
        run, p.trace32.experts(), np.stack([b.router_logits for b in p.trace32.blocks]), "fp16 KV vs fp32 KV"
    )
    aligned = _per_position(aligned_logits, p.logits32, p.scale)
    print(f"\nfp16 KV vs fp32 KV: unaligned median {np.median(natural):.3g}, max {natural.max():.3g} x std; "
          f"near-tie flips (block, position, margin) {accepted or 'none'}; aligned max {aligned.max():.3g}")
    # K and V carry relative errors <= 2^-11; through softmax and 4 blocks the logits move by about
    # 2^-11 relative (median measured ~1e-3). A bound 16x that catches a cache that is not just rounded.
    assert aligned.max() < 16 * 2.0**-11


def test_align_routing_rejects_a_flip_that_is_not_a_near_tie(parity: Parity) -> None:
    """The near-tie acceptance has teeth: a wrong expert where the margin is large is a defect."""
    from gpt_oss_metal.testing.reference import Trace

    p = parity
    margins = p.trace32.router_margins()
    pos = int(margins[0].argmax())  # the clearest choice of block 0
    forced = p.trace32.experts()[0].copy()
    k = p.header.num_active_experts
    forced[pos, k - 1] = int(np.argsort(-p.trace32.blocks[0].router_logits[pos], kind="stable")[k])

    def run(override):
        trace = Trace()
        merged = {0: forced, **(override or {})}
        return _routing_of(p.ref32.forward(p.tokens, trace, merged), trace)

    with pytest.raises(AssertionError, match="a defect, not rounding"):
        _align_routing(run, p.trace32.experts(), np.stack([b.router_logits for b in p.trace32.blocks]), "forced")


def test_router_top_k_ties_go_to_the_lowest_index(parity: Parity) -> None:
    p = parity
    k = p.header.num_active_experts
    logits = np.zeros((2, p.header.num_experts), np.float32)
    logits[0, [3, 5, 9, 11, 20]] = [2.0, 1.0, 1.0, 1.0, 1.0]  # 4th place is a 4-way tie: 5, 9, 11 win over 20
    logits[1, :] = 0.5  # all equal: experts 0..k-1
    experts, weights, margin = p.ref32.route(logits)
    assert experts[0].tolist() == [3, 5, 9, 11] and experts[1].tolist() == list(range(k))
    np.testing.assert_allclose(weights[0], np.exp([1.0, 0, 0, 0]) / np.exp([1.0, 0, 0, 0]).sum(), rtol=1e-6)
    np.testing.assert_allclose(weights[1], 1 / k, rtol=1e-6)
    assert margin.tolist() == [0.0, 0.0]
    forced, forced_weights, _ = p.ref32.route(logits, override=np.array([[20, 0, 1, 2], [0, 1, 2, 3]]))
    assert forced[0].tolist() == [20, 0, 1, 2]
    np.testing.assert_allclose(forced_weights[0], np.exp([1.0, 0, 0, 0]) / np.exp([1.0, 0, 0, 0]).sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="twice"):
        p.ref32.route(logits, override=np.array([[1, 1, 2, 3], [0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="routing override must be"):
        p.ref32.route(logits, override=np.array([[0, 1, 2, p.header.num_experts], [0, 1, 2, 3]]))


def test_step_rejects_out_of_range_tokens(parity: Parity) -> None:
    ref = parity.ref32
    with pytest.raises(ValueError, match="out of range"):
        ref.step(ref.new_cache(), [0, parity.vocab_size])
    with pytest.raises(ValueError, match="out of range"):
        ref.forward([-1])
