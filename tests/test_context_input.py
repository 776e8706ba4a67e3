"""Bad input to Context (and Sampler) gives one specific, one-line exception naming the argument,
the value and the allowed range -- never a pybind11 signature dump, a RuntimeError, a silent
truncation or a message about an internal layer -- and legal sizes always work (issue 10).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gpt_oss_metal import ContextOverflowError, InvalidArgumentError, ModelFileError
from gpt_oss_metal.errors import InvalidArgumentTypeError, InvalidTextError

VOCABULARY = 200_014  # the tiny models' vocabulary (o200k text tokens + harmony specials)


@pytest.fixture(scope="module")
def model(tiny_model_bin):
    from gpt_oss_metal import Model

    return Model(tiny_model_bin)


@pytest.fixture()
def ctx(model):
    from gpt_oss_metal import Context

    with Context(model, context_length=64) as context:
        yield context


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "incompatible function arguments" not in message, message
    return message


# ---------------------------------------------------------------- token ids


@pytest.mark.parametrize("value,shown", [(2**70, str(2**70)), (-1, "-1"), (VOCABULARY, str(VOCABULARY))])
def test_out_of_vocabulary_id_names_token_and_vocabulary(ctx, value: int, shown: str) -> None:
    """Before: append(2**70) raised pybind's RuntimeError 'Unable to cast Python instance...'."""
    for data in (value, [5, value], np.array([value]) if -2**63 <= value < 2**63 else [value]):
        with pytest.raises(InvalidArgumentError) as error:
            ctx.append(data)
        message = _one_line(error)
        assert f"token id {shown}" in message and f"{VOCABULARY} tokens" in message and "ids 0 to 200013" in message
    assert ctx.num_tokens == 0  # nothing appended


@pytest.mark.parametrize(
    "data,what",
    [
        (np.array([1.7, 2.2]), "float64 array"),  # before: silently truncated to [1, 2]
        (np.array([1.0], dtype=np.float32), "float32 array"),
        ([1, 2.5], "float"),  # before: truncated to [1, 2]
        (3.9, "float"),  # before: TypeError "'float' object is not iterable"
        (True, "bool"),  # before: appended as token 1
        ([1, False], "bool"),
        (np.array([True]), "bool array"),  # before: appended as token 1
        (np.bool_(True), "bool"),
        (["a"], "str"),
        (None, "NoneType"),
    ],
)
def test_non_integer_ids_are_refused(ctx, data, what: str) -> None:
    with pytest.raises(InvalidArgumentTypeError) as error:
        ctx.append(data)
    assert what in _one_line(error)
    assert isinstance(error.value, TypeError) and isinstance(error.value, InvalidArgumentError)
    assert ctx.num_tokens == 0


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
def test_integer_arrays_of_any_dtype_are_accepted(ctx, dtype) -> None:
    assert ctx.append(np.array([5, 6, 7], dtype=dtype)) == 3
    assert ctx.append(dtype(9)) == 1
    assert ctx.append(np.array(11, dtype=dtype)) == 1  # 0-d array
    assert ctx.tokens == [5, 6, 7, 9, 11]


def test_integer_array_range_is_checked(ctx) -> None:
    with pytest.raises(InvalidArgumentError, match=r"token id -3 at index 1 is outside the vocabulary"):
        ctx.append(np.array([1, -3], dtype=np.int8))
    with pytest.raises(InvalidArgumentError, match=rf"token id {2**64 - 1} at index 0"):
        ctx.append(np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(InvalidArgumentError, match="1-D"):
        ctx.append(np.zeros((2, 2), dtype=np.int32))
    assert ctx.num_tokens == 0


def test_iterables_and_generators(ctx) -> None:
    assert ctx.append(range(3)) == 3
    assert ctx.append(t for t in (4, 5)) == 2
    assert ctx.append((np.int32(6),)) == 1
    assert ctx.tokens == [0, 1, 2, 4, 5, 6]


def test_lone_surrogate_raises_naming_its_position(ctx) -> None:
    """Before: the codec's UnicodeEncodeError; the decision (shared with Tokenizer.encode): raise
    InvalidTextError (an InvalidArgumentError and a UnicodeEncodeError) naming the index."""
    with pytest.raises(InvalidTextError) as error:
        ctx.append("ab\ud800cd")
    message = _one_line(error)
    assert "U+D800" in message and "index 2" in message
    assert error.value.start == 2 and isinstance(error.value, UnicodeEncodeError)
    assert ctx.num_tokens == 0
    assert ctx.append("abcd") > 0


# ---------------------------------------------------------------- sampling arguments


@pytest.mark.parametrize(
    "arguments,fragment",
    [
        ({"top_k": -1}, "top_k -1 is out of range: it must be an integer in [0, 4294967295]"),
        ({"top_k": 2**32}, "top_k 4294967296 is out of range"),
        ({"seed": -1}, "seed -1 is out of range: it must be an integer in [0, 18446744073709551615]"),
        ({"seed": 2**64}, "seed 18446744073709551616 is out of range"),
        ({"max_output_tokens": -1}, "max_output_tokens -1 is out of range"),
        ({"temperature": -1.0}, "temperature -1 must be 0 (greedy) or in [0.0001, 10000]"),
        ({"temperature": 1e-50}, "temperature 1e-50 is out of range"),
        ({"temperature": 1e300}, "temperature 1e+300 is out of range"),
        ({"top_p": 1.5}, "top_p 1.5 must be in (0, 1]"),
        ({"top_p": 0.0}, "top_p 0 must be in (0, 1]"),
        ({"min_p": 2.0}, "min_p 2 must be in [0, 1]"),
        ({"presence_penalty": 3.0}, "presence_penalty 3 must be in [-2, 2]"),
        ({"frequency_penalty": -2.5}, "frequency_penalty -2.5 must be in [-2, 2]"),
        ({"repetition_penalty": 0.0}, "repetition_penalty 0 must be in [0.01, 100]"),
        ({"stop_tokens": [300_000]}, "stop token 300000 at index 0 is outside the vocabulary"),
        ({"stop_tokens": [1] * 1025}, "at most 1024"),
    ],
)
def test_out_of_range_sampling_arguments(ctx, arguments: dict, fragment: str) -> None:
    """Before: top_k=-1 / seed=-1 gave a multi-line pybind11 signature dump; an out-of-vocabulary
    stop token was accepted. Now sample and generate raise the same one-line error, before running."""
    ctx.append([1, 2, 3])
    with pytest.raises(InvalidArgumentError) as error:
        ctx.sample(**arguments)
    assert fragment in _one_line(error)
    with pytest.raises(InvalidArgumentError) as error:
        ctx.generate(**arguments)  # raised by the call itself, not at the first next()
    assert fragment in _one_line(error)
    assert ctx.tokens == [1, 2, 3]


@pytest.mark.parametrize(
    "arguments,fragment",
    [({"top_k": 1.5}, "top_k must be an integer, not float"), ({"seed": 2.0}, "seed must be an integer"),
     ({"temperature": "hot"}, "temperature must be a number, not str"), ({"top_p": True}, "top_p must be a number, not a bool"),
     ({"stop_tokens": [1.0]}, "stop token at index 0 must be an integer"), ({"max_output_tokens": 2.0}, "max_output_tokens")],
)
def test_wrong_type_sampling_arguments(ctx, arguments: dict, fragment: str) -> None:
    ctx.append([1, 2, 3])
    with pytest.raises(InvalidArgumentTypeError) as error:
        ctx.sample(**arguments)
    assert fragment in _one_line(error)


@pytest.mark.parametrize(
    "setter,value,fragment",
    [("set_top_k", -1, "top_k -1 is out of range"), ("set_seed", -1, "seed -1 is out of range"),
     ("set_temperature", -1.0, "temperature -1 must be"), ("set_top_p", 2.0, "top_p 2 must be in (0, 1]"),
     ("set_stop_tokens", [-5], "stop token -5 at index 0 is not a token id")],
)
def test_sampler_setters_report_like_sample(setter: str, value, fragment: str) -> None:
    from gpt_oss_metal import _metal

    with pytest.raises(InvalidArgumentError) as error:
        getattr(_metal.Sampler(), setter)(value)
    assert fragment in _one_line(error)


def test_numpy_scalars_are_accepted_as_settings(ctx) -> None:
    ctx.append([1, 2, 3])
    tokens = ctx.sample(max_output_tokens=np.int64(2), temperature=np.float32(0.5), seed=np.uint64(3),
                        top_k=np.int32(40), top_p=np.float64(0.9), stop_tokens=np.array([200002]))
    assert len(tokens) == 2


def test_huge_max_output_tokens_allocates_only_what_fits(tiny_model_bin) -> None:
    """Before: sample(max_output_tokens=10**9) on a 64-token context reserved ~4 GB up front (4 bytes
    per requested token). Now the output buffer is bounded by the context's free space."""
    code = textwrap.dedent(
        f"""
        import resource
        from gpt_oss_metal import Model, Context
        model = Model({str(tiny_model_bin)!r})
        ctx = Context(model, context_length=64)
        ctx.append([1, 2, 3])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tokens = ctx.sample(max_output_tokens=10**9, temperature=0.0)
        other = Context(model, context_length=64)
        other.append([1, 2, 3])
        assert len(list(other.generate(10**18, temperature=0.0))) == 61
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(len(tokens), ctx.num_tokens, grown)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    count, num_tokens, grown_kib = map(int, result.stdout.split())
    assert count == 61 and num_tokens == 64
    assert grown_kib < 256 * 1024, f"peak RSS grew by {grown_kib} KiB"


def test_full_context_still_reports_overflow(model) -> None:
    from gpt_oss_metal import Context

    ctx = Context(model, context_length=8)
    ctx.append(list(range(8)))
    with pytest.raises(ContextOverflowError, match="full"):
        ctx.sample(max_output_tokens=10**12, temperature=0.0)
    assert ctx.sample(max_output_tokens=0) == []


@pytest.mark.parametrize(
    "arguments,error,fragment",
    [({"context_length": -1}, InvalidArgumentError, "context_length -1 is out of range"),
     ({"max_batch_tokens": -3}, InvalidArgumentError, "max_batch_tokens -3 is out of range"),
     ({"context_length": 2**70}, InvalidArgumentError, "exceeds the model's maximum"),
     ({"context_length": 64.0}, InvalidArgumentTypeError, "context_length must be an integer, not float"),
     ({"max_batch_tokens": True}, InvalidArgumentTypeError, "max_batch_tokens must be an integer, not bool")],
)
def test_context_size_arguments(model, arguments: dict, error: type, fragment: str) -> None:
    from gpt_oss_metal import Context

    with pytest.raises(error) as raised:
        Context(model, **arguments)
    assert fragment in _one_line(raised)


def test_context_sizes_accept_numpy_integers(model) -> None:
    from gpt_oss_metal import Context

    with Context(model, context_length=np.int64(32), max_batch_tokens=np.uint16(3)) as ctx:
        assert ctx.max_tokens == 32


# ---------------------------------------------------------------- corrupt weights


@pytest.fixture(scope="module")
def nan_model_bin(tiny_model_bin, tmp_path_factory) -> str:
    """The tiny model with NaN (bf16 0x7FC0) in every unembedding weight."""
    from gpt_oss_metal.model_bin import read_model_bin

    path = tmp_path_factory.mktemp("nan-model") / "model.bin"
    shutil.copy(tiny_model_bin, path)
    spec = read_model_bin(str(tiny_model_bin)).layout.tensors["unembedding"]
    with open(path, "r+b") as f:
        f.seek(spec.offset)
        f.write(b"\xc0\x7f" * (spec.nbytes // 2))
    return str(path)


@pytest.mark.parametrize("how", ["sample", "generate", "generate-penalised"])
def test_nan_logits_blame_the_model_file(nan_model_bin, how: str) -> None:
    """Before: InvalidArgumentError 'gptoss_sampler_finish: every logit is -inf or NaN' (as if an
    argument were wrong). Now ModelFileError naming the position and the likely corrupt weights."""
    from gpt_oss_metal import Context, Model

    with Model(nan_model_bin) as model, Context(model, context_length=64) as ctx:
        ctx.append([1, 2, 3])
        with pytest.raises(ModelFileError) as error:
            if how == "sample":
                ctx.sample(temperature=0.0)
            elif how == "generate":
                list(ctx.generate(2, temperature=0.7))
            else:
                list(ctx.generate(2, temperature=0.7, presence_penalty=0.5))
        message = _one_line(error)
        assert "after position 2" in message and "not finite" in message and "likely corrupt" in message
        assert "200014 NaN" in message
        assert not isinstance(error.value, InvalidArgumentError)


# ---------------------------------------------------------------- every legal size works


@pytest.fixture(scope="module")
def expert_count_models(tmp_path_factory) -> dict[int, str]:
    """Small models (2 blocks, 8 experts) with 1, 2, 3 and 4 active experts per token."""
    from gpt_oss_metal.testing.checkpoints import TinyConfig, create_model_bin

    root = tmp_path_factory.mktemp("expert-counts")
    return {
        k: create_model_bin(str(root / f"k{k}.bin"), seed=k, config=TinyConfig(
            num_blocks=2, num_experts=8, experts_per_token=k, hidden_size=64, intermediate_size=32))
        for k in (1, 2, 3, 4)
    }


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_odd_batch_sizes_and_context_lengths(expert_count_models, k: int) -> None:
    """Before: with 2 active experts an odd max_batch_tokens (or an odd context_length < 128) failed
    with 'gptoss_encode_router: expert_ids offset 8 is not a multiple of 16' (max_batch_tokens=1).
    Every legal size must run and give the same logits as any other chunking."""
    from gpt_oss_metal import Context, Model

    tokens = np.random.default_rng(k).integers(0, 199_998, size=24).tolist()
    with Model(expert_count_models[k]) as model:
        reference = Context(model, context_length=512, max_batch_tokens=128, fp32_kv=True)
        reference.append(tokens)
        reference.process()
        expected = reference.logits
        for context_length, max_batch_tokens in [(512, 1), (512, 3), (512, 7), (63, 0), (27, 0), (101, 9)]:
            ctx = Context(model, context_length=context_length, max_batch_tokens=max_batch_tokens, fp32_kv=True)
            ctx.append(tokens)
            ctx.process()
            logits = ctx.logits
            diff = np.abs(logits.astype(np.float64) - expected).max() / expected.std()
            assert diff < 1e-4, (context_length, max_batch_tokens, diff)
            choices = ctx.expert_choices()
            assert choices.shape[2] == k and (choices < 8).all()
            assert len(ctx.sample(max_output_tokens=2, temperature=0.0)) == 2
