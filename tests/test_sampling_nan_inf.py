"""Sampling with masked (-inf) and NaN logits: the defined behaviour (docs/metal.md, "One numerical
contract"), on the sampling kernels run by the CPU execution layer and on the host reference.

* A -inf logit is a masked token: it is never sampled, in every mode, and stays -inf through the
  penalties and the temperature.
* A NaN logit is treated exactly like -inf: never sampled, and its scaled logit z is -inf.
* If every logit is -inf or NaN there is nothing to sample: InvalidArgumentError.
* The other tokens are sampled exactly as if the masked/NaN ones did not exist (NumPy reference).

The kernels test NaN/-inf from the float bits (not isnan / == -INFINITY), so this holds whatever the
Metal compiler assumes; these tests pin the behaviour on the CPU layer, which compiles them with IEEE
semantics like Metal with fast math off.
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


def masked_logits(vocabulary: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random logits with about a third masked (-inf) and a tenth NaN, some of them where the largest
    logits would be. Returns the logits and the boolean mask of tokens that must never be sampled."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=vocabulary).astype(np.float32)
    top = np.argsort(-logits)[: max(1, vocabulary // 10)]
    logits[top[::2]] = -np.inf                      # mask the best tokens too
    logits[top[1::4]] = np.nan
    logits[rng.random(vocabulary) < 0.3] = -np.inf
    logits[rng.random(vocabulary) < 0.1] = np.nan
    forbidden = ~np.isfinite(logits)
    assert forbidden.sum() < vocabulary - 5
    return logits, forbidden


def reference_z(logits: np.ndarray, history: list[int], num_prompt_tokens: int, temperature: float,
                presence: float = 0.0, frequency: float = 0.0, repetition: float = 1.0) -> np.ndarray:
    """NumPy: NaN -> -inf, then the penalties (repetition on prompt + generated, presence/frequency on
    generated), then 1/T; -inf stays -inf."""
    z = np.where(np.isnan(logits), np.float32(-np.inf), logits).astype(np.float32)
    generated = history[num_prompt_tokens:]
    with np.errstate(invalid="ignore"):
        for token in set(history):
            z[token] = z[token] / np.float32(repetition) if z[token] > 0 else z[token] * np.float32(repetition)
        for token in set(generated):
            z[token] -= np.float32(frequency * generated.count(token) + presence)
    return z * np.float32(1.0 if temperature == 0 else 1.0 / temperature)


def reference_distribution(z: np.ndarray, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0) -> np.ndarray:
    """Exact probabilities over token ids of softmax(z) after top-k, top-p, min-p, among finite z only."""
    finite = np.flatnonzero(np.isfinite(z))
    zf = z[finite].astype(np.float64)
    order = np.lexsort((finite, -zf))
    zs = zf[order]
    mass = np.exp(zs - zs[0])
    keep = len(zs) if top_k == 0 else min(top_k, len(zs))
    if top_p < 1.0:
        cum_before = np.concatenate([[0.0], np.cumsum(mass[:keep])[:-1]])
        keep = max(1, int(np.sum(cum_before < top_p * mass[:keep].sum())))
    if min_p > 0.0:
        keep = max(1, int(np.sum(zs[:keep] >= zs[0] + np.log(min_p))))
    probs = np.zeros(len(z))
    probs[finite[order[:keep]]] = mass[:keep] / mass[:keep].sum()
    return probs


def chi_square_p(counts: np.ndarray, probs: np.ndarray) -> float:
    if np.any(counts[probs == 0] > 0):
        return 0.0
    support = probs > 0
    expected = probs[support] * counts.sum()
    stat = float(np.sum((counts[support] - expected) ** 2 / expected))
    return float(chi2.sf(stat, df=max(1, int(support.sum()) - 1)))


PENALTIES = dict(presence_penalty=0.5, frequency_penalty=0.25, repetition_penalty=1.3)
MODES = [
    pytest.param(dict(temperature=0.0), id="greedy"),
    pytest.param(dict(temperature=0.8), id="temperature"),
    pytest.param(dict(temperature=1.0, top_k=5), id="top_k"),
    pytest.param(dict(temperature=1.2, top_p=0.7), id="top_p"),
    pytest.param(dict(temperature=1.0, min_p=0.2), id="min_p"),
    pytest.param(dict(temperature=0.9, top_k=12, top_p=0.9, min_p=0.05), id="top_k+top_p+min_p"),
    pytest.param(dict(temperature=0.7, **PENALTIES), id="penalties"),
    pytest.param(dict(temperature=0.0, **PENALTIES), id="greedy+penalties"),
    pytest.param(dict(temperature=1.0, top_p=0.8, **PENALTIES), id="top_p+penalties"),
]


def _history(forbidden: np.ndarray, vocabulary: int) -> tuple[list[int], int]:
    """A history with masked, NaN and ordinary tokens (penalties apply to all of them)."""
    masked = [int(t) for t in np.flatnonzero(forbidden)[:4]]
    ordinary = [int(t) for t in np.flatnonzero(~forbidden)[:6]]
    return ordinary[:3] + masked[:2] + ordinary[3:] + masked[2:] + ordinary[:2], 5


@pytest.mark.parametrize("vocabulary", [60, 3001])
@pytest.mark.parametrize("mode", MODES)
def test_masked_and_nan_tokens_are_never_sampled(vocabulary: int, mode: dict) -> None:
    """Kernels (CPU layer) and host reference: same token at every position, never a masked or NaN one;
    greedy picks the NumPy argmax of the finite scaled logits (ties -> lowest id)."""
    logits, forbidden = masked_logits(vocabulary, seed=vocabulary)
    penalties = "presence_penalty" in mode
    history, num_prompt = _history(forbidden, vocabulary) if penalties else ([], 0)
    sampler = make_sampler(seed=77, **mode)
    z = reference_z(logits, history, num_prompt, mode["temperature"],
                    mode.get("presence_penalty", 0.0), mode.get("frequency_penalty", 0.0),
                    mode.get("repetition_penalty", 1.0))
    for position in range(24 if vocabulary < 1000 else 6):
        gpu = sampler.sample_logits(logits, history, position=position, num_prompt_tokens=num_prompt)
        host = sampler.sample_logits_host(logits, history, position=position, num_prompt_tokens=num_prompt)
        assert gpu == host, f"position {position}: kernels {gpu}, host {host}"
        assert not forbidden[gpu], f"position {position}: sampled token {gpu} with logit {logits[gpu]}"
        if mode["temperature"] == 0.0:
            finite = np.flatnonzero(np.isfinite(z))
            assert gpu == finite[np.argmax(z[finite])]


@pytest.mark.parametrize("mode", [m for m in MODES if m.values[0]["temperature"] > 0])
def test_distribution_ignores_masked_and_nan_tokens(mode: dict) -> None:
    """20,000 host-reference draws follow the NumPy distribution over the finite tokens only (the
    kernels give the host's tokens, checked above); a negative control without the cuts or with the
    NaN/-inf tokens as ordinary low logits must be rejected."""
    logits, forbidden = masked_logits(50, seed=5)
    penalties = "presence_penalty" in mode
    history, num_prompt = _history(forbidden, 50) if penalties else ([], 0)
    sampler = make_sampler(seed=2025, **mode)
    tokens = np.array([sampler.sample_logits_host(logits, history, position=p, num_prompt_tokens=num_prompt)
                       for p in range(20_000)])
    counts = np.bincount(tokens, minlength=50)
    assert counts[forbidden].sum() == 0
    z = reference_z(logits, history, num_prompt, mode["temperature"], mode.get("presence_penalty", 0.0),
                    mode.get("frequency_penalty", 0.0), mode.get("repetition_penalty", 1.0))
    cuts = {k: mode[k] for k in ("top_k", "top_p", "min_p") if k in mode}
    assert chi_square_p(counts, reference_distribution(z, **cuts)) > P_THRESHOLD
    # Negative controls: the NaN/-inf tokens as ordinary logits (the largest: inside every cut), or a
    # sharper temperature.
    with_forbidden = np.where(forbidden, np.float32(np.max(z[np.isfinite(z)])), z)
    assert chi_square_p(counts, reference_distribution(with_forbidden, **cuts)) < P_THRESHOLD
    assert chi_square_p(counts, reference_distribution(z * 2.0, **cuts)) < P_THRESHOLD


@pytest.mark.parametrize("penalties", [False, True])
def test_scaled_logits_nan_becomes_minus_inf(penalties: bool) -> None:
    """z of a NaN logit is -inf, z of a -inf logit stays -inf (also when penalised), on both paths."""
    logits, forbidden = masked_logits(300, seed=9)
    settings = dict(temperature=0.5, **(PENALTIES if penalties else {}))
    history, num_prompt = _history(forbidden, 300) if penalties else ([], 0)
    sampler = make_sampler(**settings)
    gpu = sampler.scaled_logits(logits, history, num_prompt_tokens=num_prompt)
    host = sampler.scaled_logits_host(logits, history, num_prompt_tokens=num_prompt)
    np.testing.assert_array_equal(gpu, host)
    assert np.all(gpu[forbidden] == -np.inf) and not np.any(np.isnan(gpu))
    expected = reference_z(logits, history, num_prompt, 0.5, **({} if not penalties else dict(
        presence=0.5, frequency=0.25, repetition=1.3)))
    np.testing.assert_allclose(gpu, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fill", ["-inf", "nan", "mixed"])
def test_nothing_to_sample_is_an_error(mode: dict, fill: str) -> None:
    logits = np.full(40, -np.inf if fill == "-inf" else np.nan, dtype=np.float32)
    if fill == "mixed":
        logits[::2] = -np.inf
    sampler = make_sampler(**mode)
    with pytest.raises(InvalidArgumentError, match="-inf or NaN"):
        sampler.sample_logits(logits, [1, 2], num_prompt_tokens=1)
    with pytest.raises(InvalidArgumentError, match="-inf or NaN"):
        sampler.sample_logits_host(logits, [1, 2], num_prompt_tokens=1)


def test_single_finite_token_is_always_sampled() -> None:
    logits = np.full(3001, -np.inf, dtype=np.float32)
    logits[1::3] = np.nan
    logits[2222] = -50.0  # the only finite logit, far below 0
    for mode in MODES:
        sampler = make_sampler(seed=1, **mode.values[0])
        assert sampler.sample_logits(logits, position=3) == 2222
        assert sampler.sample_logits_host(logits, position=3) == 2222
