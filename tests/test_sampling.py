"""Sampling: the sampler's settings, its GPU kernels (sampling.metal) and the host reference.

Statistical tests use a chi-square goodness-of-fit test with threshold p < 1e-4: a correct sampler
fails it with probability 1e-4 per test, and the seeds are fixed, so each test is deterministic (it
passes or fails the same way every run). Each distribution test has a negative control — the same
draws tested against a deliberately wrong distribution (multiplied temperature, no truncation) —
which must be rejected, proving the test has the power to fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from gpt_oss_metal import _metal
from gpt_oss_metal.errors import InvalidArgumentError

P_THRESHOLD = 1e-4


def make_sampler(**settings) -> _metal.Sampler:
    sampler = _metal.Sampler()
    for name, value in settings.items():
        getattr(sampler, f"set_{name}")(value)
    return sampler


def expected_distribution(logits: np.ndarray, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                          min_p: float = 0.0) -> np.ndarray:
    """Exact probabilities over token ids: softmax(logits / T) after top-k, top-p, min-p (NumPy, float64)."""
    z = logits.astype(np.float64) / temperature
    order = np.lexsort((np.arange(len(z)), -z))  # z descending, ids ascending
    zs = z[order]
    mass = np.exp(zs - zs[0])
    keep = len(z) if top_k == 0 else min(top_k, len(z))
    if top_p < 1.0:
        cum_before = np.concatenate([[0.0], np.cumsum(mass[:keep])[:-1]])
        keep = max(1, int(np.sum(cum_before < top_p * mass[:keep].sum())))
    if min_p > 0.0:
        keep = max(1, int(np.sum(zs[:keep] >= zs[0] + np.log(min_p))))
    probs = np.zeros(len(z))
    probs[order[:keep]] = mass[:keep] / mass[:keep].sum()
    return probs


def chi_square_p(counts: np.ndarray, probs: np.ndarray) -> float:
    """p-value of observed counts against probabilities; draws outside the support give p = 0."""
    if np.any(counts[probs == 0] > 0):
        return 0.0
    support = probs > 0
    expected = probs[support] * counts.sum()
    stat = float(np.sum((counts[support] - expected) ** 2 / expected))
    return float(chi2.sf(stat, df=int(support.sum()) - 1))


def draw_host(sampler: _metal.Sampler, logits: np.ndarray, n: int) -> np.ndarray:
    return np.array([sampler.sample_logits_host(logits, position=p) for p in range(n)])


SMALL_CONFIGS = [
    dict(temperature=1.0),
    dict(temperature=0.5),
    dict(temperature=2.0),
    dict(temperature=0.7, top_k=7),
    dict(temperature=1.3, top_p=0.8),
    dict(temperature=1.0, min_p=0.1),
    dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.02),
]


@pytest.fixture(scope="module")
def small_logits() -> np.ndarray:
    return np.random.default_rng(1234).normal(scale=1.5, size=50).astype(np.float32)


@pytest.mark.parametrize("config", SMALL_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_chi_square_small_vocabulary(small_logits: np.ndarray, config: dict) -> None:
    """20,000 draws (host reference, same RNG and cuts as the GPU path) match the exact distribution."""
    sampler = make_sampler(seed=99, **config)
    tokens = draw_host(sampler, small_logits, 20_000)
    counts = np.bincount(tokens, minlength=len(small_logits))
    probs = expected_distribution(small_logits, **config)
    assert chi_square_p(counts, probs) > P_THRESHOLD
    # Negative control: temperature multiplied instead of divided (the original runtime's defect)
    # or, at T = 1, the truncation ignored — either must be rejected.
    wrong = dict(config)
    if config["temperature"] != 1.0:
        wrong["temperature"] = 1.0 / config["temperature"]
    else:
        wrong = dict(temperature=0.8)
    assert chi_square_p(counts, expected_distribution(small_logits, **wrong)) < P_THRESHOLD


def test_chi_square_gpu_path_small_vocabulary(small_logits: np.ndarray) -> None:
    """The GPU path itself (not just its equality with the host) passes a goodness-of-fit test."""
    config = dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.02)
    sampler = make_sampler(seed=5, **config)
    tokens = np.array([sampler.sample_logits(small_logits, position=p) for p in range(4000)])
    counts = np.bincount(tokens, minlength=len(small_logits))
    assert chi_square_p(counts, expected_distribution(small_logits, **config)) > P_THRESHOLD
    assert chi_square_p(counts, expected_distribution(small_logits, temperature=1.25)) < P_THRESHOLD


def test_chi_square_flat_full_vocabulary() -> None:
    """V = 200014 nearly flat logits, top-p 0.9 keeps most tokens: draws binned by rank into 10 bins of
    equal expected mass (a bin per token would need millions of draws); no draw outside the kept set."""
    vocabulary = 200_014
    logits = np.random.default_rng(7).normal(scale=0.3, size=vocabulary).astype(np.float32)
    sampler = make_sampler(seed=3, top_p=0.9)
    probs = expected_distribution(logits, top_p=0.9)
    kept = int(np.count_nonzero(probs))
    assert kept > 0.8 * vocabulary  # the regime the test is about
    draws = 600  # 60 expected per bin; the host reference sorts 200k logits per draw (~70 ms)
    tokens = draw_host(sampler, logits, draws)
    assert np.all(probs[tokens] > 0), "a token outside the top-p set was drawn"

    def binned(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.lexsort((np.arange(vocabulary), -logits))
        edges = np.searchsorted(np.cumsum(probs[order]), np.linspace(0, 1, 11)[1:-1])
        bin_of_rank = np.searchsorted(edges, np.arange(vocabulary), side="right")
        bin_of_token = np.empty(vocabulary, dtype=np.int64)
        bin_of_token[order] = bin_of_rank
        return np.bincount(bin_of_token[tokens], minlength=10), np.bincount(bin_of_token, weights=p, minlength=10)

    counts, expected = binned(probs)
    assert chi_square_p(counts, expected) > P_THRESHOLD
    wrong_counts, wrong = binned(expected_distribution(logits, temperature=0.5, top_p=0.9))
    assert chi_square_p(wrong_counts, wrong) < P_THRESHOLD
    # The GPU path (histogram + boundary-bucket candidates) picks the same tokens as the host.
    for position in range(2):
        assert sampler.sample_logits(logits, position=position) == tokens[position]


@pytest.mark.parametrize("vocabulary", [50, 1, 33, 3001, 40_000])
@pytest.mark.parametrize("config", SMALL_CONFIGS + [dict(temperature=0.0)],
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_gpu_path_equals_host_path(vocabulary: int, config: dict) -> None:
    """Same seed, same inputs: the GPU path and the host reference give the same token (several chunks
    and a vocabulary that is not a multiple of the chunk or threadgroup sizes)."""
    rng = np.random.default_rng(vocabulary)
    logits = rng.normal(scale=2.0, size=vocabulary).astype(np.float32)
    sampler = make_sampler(seed=2024, presence_penalty=0.5, frequency_penalty=0.25, repetition_penalty=1.3, **config)
    history = [int(t) for t in rng.integers(0, vocabulary, size=20)]
    positions = range(12) if vocabulary < 10_000 else range(3)
    for position in positions:
        gpu = sampler.sample_logits(logits, history, position=position, num_prompt_tokens=8)
        host = sampler.sample_logits_host(logits, history, position=position, num_prompt_tokens=8)
        assert gpu == host, f"position {position}"


def test_fixed_seed_reproducible(small_logits: np.ndarray) -> None:
    a = make_sampler(seed=11, top_p=0.95)
    b = make_sampler(seed=11, top_p=0.95)
    c = make_sampler(seed=12, top_p=0.95)
    run_a = [a.sample_logits(small_logits, position=p) for p in range(30)]
    assert run_a == [b.sample_logits(small_logits, position=p) for p in range(30)]
    assert run_a == [a.sample_logits(small_logits, position=p) for p in range(30)]  # re-run
    assert run_a != [c.sample_logits(small_logits, position=p) for p in range(30)]  # the seed matters
    # The draw depends on the position only, not on what was sampled before.
    assert a.sample_logits(small_logits, position=17) == run_a[17]


def test_greedy_ties_pick_lowest_id() -> None:
    logits = np.zeros(3000, dtype=np.float32)
    logits[[2500, 1800, 2999]] = 4.0  # tie across different chunks of the GPU passes
    sampler = make_sampler(temperature=0.0)
    assert sampler.sample_logits(logits) == 1800
    assert sampler.sample_logits_host(logits) == 1800
    logits[5] = np.nan  # NaN is never chosen
    assert sampler.sample_logits(logits) == 1800
    # A repetition penalty on token 1800 (seen in the history) makes 2500 the lowest tied maximum.
    sampler.set_repetition_penalty(2.0)
    assert sampler.sample_logits(logits, [1800]) == 2500
    assert sampler.sample_logits_host(logits, [1800]) == 2500


def test_penalties_change_exactly_the_intended_logits() -> None:
    rng = np.random.default_rng(3)
    vocabulary = 1000
    logits = rng.normal(scale=3.0, size=vocabulary).astype(np.float32)
    prompt = [1, 2, 3, 3, 500]
    generated = [3, 7, 7, 7, 900, 2]
    history = prompt + generated
    presence, frequency, repetition, temperature = 0.75, 0.5, 1.5, 0.8
    sampler = make_sampler(presence_penalty=presence, frequency_penalty=frequency,
                           repetition_penalty=repetition, temperature=temperature)
    expected = logits.copy()
    for token in set(history):  # repetition: prompt and generated tokens
        expected[token] = expected[token] / np.float32(repetition) if expected[token] > 0 else expected[token] * np.float32(repetition)
    for token in set(generated):  # presence/frequency: generated tokens only
        expected[token] -= np.float32(frequency * generated.count(token) + presence)
    expected = expected * np.float32(1.0 / temperature)
    gpu = sampler.scaled_logits(logits, history, num_prompt_tokens=len(prompt))
    host = sampler.scaled_logits_host(logits, history, num_prompt_tokens=len(prompt))
    np.testing.assert_array_equal(gpu, host)  # same float operations in the same order
    # Float32 arithmetic in a different association than NumPy's: a few ulp at |z| <~ 15.
    np.testing.assert_allclose(gpu, expected, rtol=1e-6, atol=1e-6)
    touched = np.flatnonzero(gpu != logits * np.float32(1.0 / temperature))
    assert set(touched) == set(history)
    # Negative control: counting the prompt for presence/frequency would change token 500 and 1.
    assert gpu[500] == pytest.approx(logits[500] / repetition / temperature if logits[500] > 0
                                     else logits[500] * repetition / temperature, rel=1e-6)


def test_temperature_divides(small_logits: np.ndarray) -> None:
    sampler = make_sampler(temperature=4.0)
    np.testing.assert_allclose(sampler.scaled_logits(small_logits), small_logits / 4.0, rtol=1e-7)


@pytest.mark.parametrize("setter,value", [
    ("temperature", -1.0), ("temperature", float("nan")), ("temperature", 1e-6), ("temperature", 1e5),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", float("nan")),
    ("min_p", -0.1), ("min_p", 1.1),
    ("presence_penalty", 2.5), ("frequency_penalty", -3.0), ("presence_penalty", float("nan")),
    ("repetition_penalty", 0.0), ("repetition_penalty", 1000.0),
    ("top_k", -1),
])
def test_invalid_settings_raise(setter: str, value: float) -> None:
    sampler = _metal.Sampler()
    with pytest.raises(InvalidArgumentError, match=setter.split("_")[0]):
        getattr(sampler, f"set_{setter}")(value)


def test_invalid_inputs_raise(small_logits: np.ndarray) -> None:
    sampler = _metal.Sampler()
    with pytest.raises(InvalidArgumentError):
        sampler.sample_logits(np.zeros(0, dtype=np.float32))
    with pytest.raises(InvalidArgumentError):
        sampler.sample_logits(small_logits, [50])  # not a token id of this vocabulary
    with pytest.raises(InvalidArgumentError):
        sampler.sample_logits(small_logits, [1, 2], num_prompt_tokens=3)
    with pytest.raises(InvalidArgumentError):
        sampler.sample_logits(np.full(10, -np.inf, dtype=np.float32))  # nothing can be sampled
    with pytest.raises(InvalidArgumentError):
        sampler.sample_logits_host(np.full(10, np.nan, dtype=np.float32))


def test_stop_tokens_roundtrip() -> None:
    sampler = _metal.Sampler()
    sampler.set_stop_tokens([200002, 200012])
    assert sampler.stop_tokens == [200002, 200012]
    sampler.set_stop_tokens([])
    assert sampler.stop_tokens == []
    with pytest.raises(InvalidArgumentError):
        sampler.set_stop_tokens(list(range(2000)))
