"""The thread-safety contract (docs/thread-safety.md).

- A Context runs one call at a time: a call that overlaps another thread's call raises
  InvalidStateError ("context is in use by another thread") and changes nothing, so the context is
  never silently corrupted; cancel() works from any thread.
- close() from another thread during a running call cancels it and waits for it: no use-after-free
  (this used to be a SIGSEGV), the running call raises CancelledError saying the context was closed.
- Model and Tokenizer are immutable after load and shared freely; a Sampler snapshot is taken per
  sampling call, so changing a sampler while another thread samples with it is safe.

Races are provoked, not guaranteed: each test keeps a long call running (a long sample on a context
of a few hundred tokens) and asserts what must hold whatever the interleaving.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from gpt_oss_metal import CancelledError, InvalidStateError


@pytest.fixture(scope="module")
def model(tiny_model_bin):
    from gpt_oss_metal import Model

    return Model(tiny_model_bin)


def _start_long_sample(ctx, outcome: dict) -> threading.Thread:
    """Starts a greedy sample of many tokens in a thread; `outcome` gets 'tokens' or 'error'."""

    def work() -> None:
        try:
            outcome["tokens"] = ctx.sample(max_output_tokens=10_000, temperature=0.0)
        except BaseException as error:  # inspected by the test
            outcome["error"] = error

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def _wait_until_running(ctx, outcome: dict, timeout: float = 30.0) -> bool:
    """True once another thread's call holds the context (a guarded call raises 'in use')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not outcome:
        try:
            ctx.num_tokens
        except InvalidStateError as error:
            assert "context is in use by another thread" in str(error)
            return True
        time.sleep(0.001)
    return False


def test_close_during_sample_cancels_and_waits(model, tiny_model_bin) -> None:
    """Probe 1: close() while another thread is inside sample(). Run in a subprocess: before the
    fix this crashed the interpreter (SIGSEGV: the binding freed the C context under the call)."""
    code = textwrap.dedent(
        f"""
        import threading, time
        from gpt_oss_metal import Model, Context, CancelledError, InvalidStateError
        model = Model({str(tiny_model_bin)!r})
        for attempt in range(3):
            ctx = Context(model, context_length=512)
            ctx.append([1, 2, 3])
            outcome = {{}}
            def work():
                try:
                    outcome["tokens"] = ctx.sample(max_output_tokens=10_000, temperature=0.0)
                except BaseException as error:
                    outcome["error"] = error
            thread = threading.Thread(target=work)
            thread.start()
            time.sleep(0.3 * (attempt + 1))
            ctx.close()                      # cancels the running sample and waits for it
            assert ctx.closed
            thread.join(60)
            assert not thread.is_alive()
            error = outcome.get("error")
            assert error is None or (isinstance(error, CancelledError) and "closed the context" in str(error)), error
            try:
                ctx.sample(temperature=0.0)
            except InvalidStateError as error:
                assert "closed" in str(error)
            else:
                raise AssertionError("a closed context must refuse calls")
        print("OK")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-2000:])
    assert result.stdout.strip().endswith("OK")


def test_close_during_process_in_process(model) -> None:
    from gpt_oss_metal import Context

    ctx = Context(model, context_length=512, max_batch_tokens=4)
    ctx.append(list(range(1, 400)))
    outcome: dict = {}

    def work() -> None:
        try:
            ctx.process()
            outcome["done"] = True
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=work)
    thread.start()
    _wait_until_running(ctx, outcome)
    ctx.close()
    thread.join(60)
    assert not thread.is_alive()
    assert "done" in outcome or isinstance(outcome.get("error"), CancelledError)
    assert ctx.closed and repr(ctx) == "Context(closed)"


def test_concurrent_calls_raise_and_never_corrupt(model) -> None:
    """Probe 2: two threads sampling (and appending, processing, resetting) on one context.
    Each overlapping call either runs alone or raises InvalidStateError; afterwards the context's
    greedy continuation equals a fresh context's fed the same tokens (before: it differed)."""
    from gpt_oss_metal import Context

    ctx = Context(model, context_length=1024)
    ctx.append([1, 2, 3])
    ctx.process()
    refused: list[str] = []
    unexpected: list[BaseException] = []

    def work(kind: int) -> None:
        for _ in range(12):
            try:
                if kind == 0:
                    ctx.sample(max_output_tokens=3, temperature=0.0)
                elif kind == 1:
                    ctx.sample(max_output_tokens=2, temperature=0.7, seed=5)
                else:
                    ctx.append([7, 8])
                    ctx.process()
            except InvalidStateError as error:
                refused.append(str(error))
            except BaseException as error:
                unexpected.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not unexpected, unexpected
    for message in refused:
        assert "context is in use by another thread" in message and "is running on it" in message
    tokens = ctx.tokens
    fresh = Context(model, context_length=1024)
    fresh.append(tokens)
    assert ctx.sample(max_output_tokens=8, temperature=0.0) == fresh.sample(max_output_tokens=8, temperature=0.0)


def test_overlapping_call_is_refused_and_changes_nothing(model) -> None:
    from gpt_oss_metal import Context

    ctx = Context(model, context_length=512)
    ctx.append([1, 2, 3])
    outcome: dict = {}
    thread = _start_long_sample(ctx, outcome)
    try:
        if not _wait_until_running(ctx, outcome):
            pytest.skip("the sample finished before another call could overlap it")
        for call in (
            lambda: ctx.append([4]),
            lambda: ctx.append("text"),
            ctx.process,
            ctx.reset,
            lambda: ctx.sample(temperature=0.0),
            lambda: list(ctx.generate(2, temperature=0.0)),
            lambda: ctx.logits,
            lambda: ctx.tokens,
        ):
            try:
                call()
            except InvalidStateError as error:
                assert "context is in use by another thread" in str(error)
            else:
                assert outcome, "a call overlapping a running sample must raise InvalidStateError"
        assert repr(ctx).startswith("Context(")  # repr never raises
    finally:
        ctx.cancel()  # from this thread, while the other runs
        thread.join(60)
    assert "tokens" in outcome or isinstance(outcome.get("error"), CancelledError)
    # Still consistent: the sequence is [1, 2, 3] + what was sampled, and it continues like a fresh one.
    tokens = ctx.tokens
    assert tokens[:3] == [1, 2, 3]
    fresh = Context(model, context_length=512)
    fresh.append(tokens)
    if len(tokens) < 500:
        assert ctx.sample(max_output_tokens=4, temperature=0.0) == fresh.sample(max_output_tokens=4, temperature=0.0)


def test_cancel_works_from_any_thread_during_a_call(model) -> None:
    from gpt_oss_metal import Context

    ctx = Context(model, context_length=512)
    ctx.append([1, 2, 3])
    outcome: dict = {}
    thread = _start_long_sample(ctx, outcome)
    running = _wait_until_running(ctx, outcome)
    ctx.cancel()
    thread.join(60)
    if running and "error" in outcome:
        assert isinstance(outcome["error"], CancelledError)
    ctx.sample(temperature=0.0)  # usable again


def test_contexts_on_one_model_run_in_parallel(model) -> None:
    """Model and Tokenizer are shared: contexts in different threads give the results of a lone run."""
    from gpt_oss_metal import Context

    prompts = [[1, 2, 3, 4], [9, 8, 7], [100, 200, 300, 400, 500]]
    expected = []
    for prompt in prompts:
        ctx = Context(model, context_length=128)
        ctx.append(prompt)
        expected.append(ctx.sample(max_output_tokens=6, temperature=0.0))
    results: dict[int, list[int]] = {}
    texts: dict[int, list[int]] = {}

    def work(i: int) -> None:
        ctx = Context(model, context_length=128)
        ctx.append(prompts[i])
        results[i] = ctx.sample(max_output_tokens=6, temperature=0.0)
        texts[i] = model.tokenizer.encode("The quick brown fox " * (i + 1))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(prompts))] == expected
    for i in range(len(prompts)):
        assert texts[i] == model.tokenizer.encode("The quick brown fox " * (i + 1))


def test_sampler_changed_while_another_thread_samples_with_it() -> None:
    """A sampling call uses a snapshot of the sampler: setters from another thread are safe."""
    from gpt_oss_metal import _metal

    logits = np.random.default_rng(0).standard_normal(50_000).astype(np.float32)
    sampler = _metal.Sampler()
    sampler.set_temperature(0.0)
    expected = sampler.sample_logits_host(logits)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            sampler.set_stop_tokens(list(range(1000)))
            sampler.set_stop_tokens([])
            sampler.set_temperature(0.0)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(20):
            assert sampler.sample_logits(logits, device="cpu") == expected
    finally:
        stop.set()
        thread.join()
