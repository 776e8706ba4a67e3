"""gpt_oss_metal.Context behaviour: argument errors, prefix reuse after reset, sampled tokens' KV,
threads sharing a model, cancellation, text appends.

Logit comparisons between two runtime runs use fp32 KV and a tolerance of 1e-4 x the logit std: the
same kernels on the same tokens, but chunked differently (GEMM vs mat-vec paths, other summation
orders), so the runs differ by float32 rounding only: each is within ~eps32 (4.2e-6 std on this
model, docs/reference-model.md) of the exact result, so they differ by ~1e-5; 1e-4 leaves headroom.
(With fp16 KV an entry may round the other way in one run, measured ~1e-4 std.) A wrong or missing
KV entry moves logits by ~0.1-1 std, three orders of magnitude more.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gpt_oss_metal import CancelledError, ContextOverflowError, InvalidArgumentError, InvalidStateError

RUN_TOLERANCE = 1e-4  # x logit std, see the module docstring


@pytest.fixture(scope="module")
def model(tiny_model_bin):
    from gpt_oss_metal import Model

    return Model(tiny_model_bin)


def _tokens(n: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, 199_998, size=n).tolist()


def _fresh_logits(model, tokens: list[int], batch: int = 32) -> np.ndarray:
    from gpt_oss_metal import Context

    ctx = Context(model, context_length=256, max_batch_tokens=batch, fp32_kv=True)
    ctx.append(tokens)
    ctx.process()
    return ctx.logits


def _assert_same_run(a: np.ndarray, b: np.ndarray) -> None:
    diff = np.abs(a.astype(np.float64) - b).max() / b.std()
    assert diff <= RUN_TOLERANCE, f"max |a - b| / std = {diff:.3g}"


def test_errors_append_nothing(model) -> None:
    from gpt_oss_metal import Context

    ctx = Context(model, context_length=16, max_batch_tokens=8)
    assert ctx.max_tokens == 16 and ctx.num_tokens == 0
    ctx.append([1, 2, 3])
    vocab = model.tokenizer.num_tokens
    with pytest.raises(InvalidArgumentError, match=rf"token id {vocab} at index 1"):
        ctx.append([5, vocab, 6])
    with pytest.raises(InvalidArgumentError, match="index 0"):
        ctx.append(-1)
    with pytest.raises(ContextOverflowError, match="do not fit"):
        ctx.append(list(range(14)))
    assert ctx.tokens == [1, 2, 3]
    ctx.append(list(range(13)))  # exactly fills it
    assert ctx.num_tokens == 16
    with pytest.raises(ContextOverflowError):
        ctx.append(7)
    with pytest.raises(InvalidStateError, match="no logits"):
        ctx.logits
    with pytest.raises(InvalidStateError, match="empty"):
        ctx._native.set_fp32_kv(True)  # KV precision only changes while the context is empty
    with pytest.raises(InvalidArgumentError, match="context_length"):
        Context(model, context_length=model.max_context_length + 1)


def test_append_text_matches_tiktoken(model) -> None:
    from gpt_oss_metal import Context, vocab

    text = "Hello, world! <|start|> naïve 1234567 🙂\n\n  x"
    ctx = Context(model, context_length=64)
    n = ctx.append(text)
    want = vocab.tiktoken_encoding("o200k_base").encode(text, disallowed_special=())
    assert ctx.tokens == want and n == len(want)
    with pytest.raises(ContextOverflowError):
        ctx.append("word " * 100)
    assert ctx.tokens == want


def test_decode_and_prefill_paths_agree(model) -> None:
    tokens = _tokens(40, seed=1)
    from gpt_oss_metal import Context

    # Token by token runs the decode kernels (mat-vec, decode attention, per-token MoE); 40 at once
    # the prefill kernels (GEMM, batched attention, grouped MoE).
    one_by_one = Context(model, context_length=64, max_batch_tokens=1, fp32_kv=True)
    for t in tokens:
        one_by_one.append(t)
        one_by_one.process()
    _assert_same_run(one_by_one.logits, _fresh_logits(model, tokens, batch=40))


@pytest.mark.parametrize("keep", [90, 30])
def test_reset_reuses_prefix_and_matches_fresh_context(model, keep: int) -> None:
    """keep=90: the divergence is within the ring (W + batch slots) of the old end: cached entries are
    reused. keep=30: the old sequence ran 70 tokens past it, the ring lost the window: recomputed."""
    from gpt_oss_metal import Context

    old = _tokens(100, seed=2)
    new = old[:keep] + _tokens(20, seed=3)
    ctx = Context(model, context_length=256, max_batch_tokens=32, fp32_kv=True)
    ctx.append(old)
    ctx.process()
    ctx.reset()
    assert ctx.num_tokens == 0
    with pytest.raises(InvalidStateError):
        ctx.logits
    ctx.append(new)
    assert ctx.tokens == new
    assert ctx.num_processed_tokens == keep  # the common prefix is still cached
    ctx.process()
    assert ctx.num_processed_tokens == len(new)
    _assert_same_run(ctx.logits, _fresh_logits(model, new))


def test_reset_to_a_strict_prefix_recomputes_its_last_logits(model) -> None:
    from gpt_oss_metal import Context

    old = _tokens(50, seed=4)
    ctx = Context(model, context_length=128, max_batch_tokens=32, fp32_kv=True)
    ctx.append(old)
    ctx.process()
    ctx.reset()
    ctx.append(old[:45])
    ctx.process()
    _assert_same_run(ctx.logits, _fresh_logits(model, old[:45]))


def test_sampled_tokens_kv_is_computed(model) -> None:
    """Sample, append more, process: the logits equal a fresh context fed the same tokens (the last
    sampled token's KV entry must exist, unlike in the original runtime)."""
    from gpt_oss_metal import Context

    prompt = _tokens(20, seed=5)
    ctx = Context(model, context_length=128, max_batch_tokens=32, fp32_kv=True)
    ctx.append(prompt)
    sampled = ctx.sample(max_output_tokens=3, temperature=0.0)
    assert len(sampled) == 3 and ctx.tokens == prompt + sampled
    ctx.append([11, 12])
    ctx.process()
    _assert_same_run(ctx.logits, _fresh_logits(model, prompt + sampled + [11, 12]))
    # Greedy sampling picks the argmax of the previous position's logits.
    assert sampled[0] == int(np.argmax(_fresh_logits(model, prompt)))


def test_stop_tokens_and_seeded_sampling(model) -> None:
    from gpt_oss_metal import Context

    prompt = _tokens(10, seed=6)
    first = Context(model, context_length=64)
    first.append(prompt)
    greedy = first.sample(max_output_tokens=2, temperature=0.0)
    stopped = Context(model, context_length=64)
    stopped.append(prompt)
    assert stopped.sample(max_output_tokens=5, temperature=0.0, stop_tokens=[greedy[0]]) == greedy[:1]
    runs = []
    for _ in range(2):
        ctx = Context(model, context_length=64)
        ctx.append(prompt)
        runs.append(ctx.sample(max_output_tokens=2, temperature=1.0, seed=1234))
    assert runs[0] == runs[1]


def test_sample_when_full_raises_overflow(model) -> None:
    from gpt_oss_metal import Context

    ctx = Context(model, context_length=8)
    ctx.append(_tokens(7, seed=7))
    assert len(ctx.sample(max_output_tokens=5, temperature=0.0)) == 1  # stops when full
    with pytest.raises(ContextOverflowError):
        ctx.sample(max_output_tokens=1, temperature=0.0)


def test_two_threads_two_contexts_one_model(model) -> None:
    inputs = [_tokens(24, seed=8), _tokens(24, seed=9)]
    alone = [_fresh_logits(model, t) for t in inputs]
    results: list[np.ndarray | None] = [None, None]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = _fresh_logits(model, inputs[i])
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got, want in zip(results, alone):
        np.testing.assert_array_equal(got, want)  # same kernels, same chunks: bit-identical


def test_cancel_leaves_context_consistent(model) -> None:
    from gpt_oss_metal import Context

    tokens = _tokens(40, seed=10)
    ctx = Context(model, context_length=64, max_batch_tokens=16, fp32_kv=True)
    ctx.append(tokens[:16])
    ctx.process()
    ctx.append(tokens[16:])
    ctx.cancel()  # a pending request cancels the next call
    with pytest.raises(CancelledError):
        ctx.process()
    assert ctx.tokens == tokens and ctx.num_processed_tokens == 16
    # Cancel from another thread while a process runs: either it finished first or it was cancelled.
    timer = threading.Timer(0.2, ctx.cancel)
    timer.start()
    try:
        ctx.process()
    except CancelledError:
        assert ctx.num_processed_tokens in (16, 32)
    timer.join()
    ctx.cancel()
    ctx.reset()  # consume nothing: reset is not a run; the request stays pending
    ctx.append(tokens)
    with pytest.raises(CancelledError):
        ctx.process()
    ctx.process()
    assert ctx.num_processed_tokens == 40
    _assert_same_run(ctx.logits, _fresh_logits(model, tokens))
