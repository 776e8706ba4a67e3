"""Builds and runs tests/cpp/test_msl_types.cpp (the MSL type/math library of the CPU execution
layer) and compares the values it dumps with NumPy.

The C++ program self-checks constructors, conversions, swizzles, operators, layout, as_type, select
and the integer/geometric functions, and writes inputs and results of the half/bfloat conversions,
half/bfloat arithmetic and float/half math functions to a temp dir; here the expected values are
computed from those inputs with NumPy (np.float16 for half; bfloat16 rounding computed independently
from the float64 value) and compared bit for bit or within stated ULP tolerances.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MSL_DIR = REPO / "metal" / "source" / "cpu" / "msl"
SOURCE = REPO / "tests" / "cpp" / "test_msl_types.cpp"


def _compiler() -> str:
    for candidate in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if candidate and shutil.which(candidate.split()[0]):
            return candidate
    raise RuntimeError("no C++ compiler: set CXX or install g++/clang++")


def _workaround_flags() -> list[str]:
    """GCC 12's IPA mod-ref analysis drops stores to a half/vector temporary whose element is then
    passed *by value* to a function it found `const` (seen with GCC 12.2 at -O1 in this test's
    `as_double(v[k])`; -fno-ipa-modref, -fno-tree-dse or passing by reference avoid it; GCC 13 does
    not show it).  The translated kernels need the same flag on GCC 12 (see docs/msl-cpu-types.md)."""
    probe = subprocess.run([*_compiler().split(), "-dumpversion"], capture_output=True, text=True)
    is_gcc = subprocess.run([*_compiler().split(), "--version"], capture_output=True, text=True).stdout
    major = int((probe.stdout.strip().split(".") or ["0"])[0] or 0)
    if "Free Software Foundation" in is_gcc and major <= 12:
        return ["-fno-ipa-modref"]
    return []


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compile and run the C++ test once; return its output directory."""
    work = tmp_path_factory.mktemp("msl_types")
    exe = work / "test_msl_types"
    build = subprocess.run(
        [*_compiler().split(), "-std=c++17", "-O1", "-Wall", "-Wextra", *_workaround_flags(), f"-I{MSL_DIR}", str(SOURCE),
         "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, f"compile failed:\n{build.stderr[-6000:]}"
    assert "warning" not in build.stderr, f"compile warnings:\n{build.stderr[-6000:]}"
    out = work / "out"
    out.mkdir()
    run = subprocess.run([str(exe), str(out)], capture_output=True, text=True, timeout=300)
    failures = [line for line in run.stdout.splitlines() if line.startswith("FAIL")]
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "(no output)"
    assert run.returncode == 0 and not failures, "C++ checks failed:\n" + "\n".join(failures[:50]) + f"\n{summary}"
    assert summary.startswith("cpp checks:") and " 0 failed" in summary, summary
    (out / "stdout.txt").write_text(run.stdout)
    return out


def _load(out: Path, name: str, dtype: type) -> np.ndarray:
    return np.fromfile(out / f"{name}.bin", dtype=dtype)


def _assert_bits_equal(got: np.ndarray, want: np.ndarray, inputs: np.ndarray, what: str, nan_mask: np.ndarray) -> None:
    """Bitwise equality except where the expected value is NaN (then the result must be NaN)."""
    bad = (got != want) & ~nan_mask
    bad |= nan_mask & ~_is_nan16(got, what)
    if bad.any():
        idx = np.flatnonzero(bad)[:10]
        rows = [f"in={inputs[i]!r} got=0x{int(got[i]):04x} want=0x{int(want[i]):04x}" for i in idx]
        raise AssertionError(f"{what}: {bad.sum()} of {bad.size} differ, e.g.\n" + "\n".join(rows))


def _is_nan16(bits: np.ndarray, what: str) -> np.ndarray:
    bits = bits.astype(np.uint32)
    if "bfloat" in what:
        return ((bits & 0x7F80) == 0x7F80) & ((bits & 0x7F) != 0)
    return ((bits & 0x7C00) == 0x7C00) & ((bits & 0x3FF) != 0)


def _round_to_bits(x: np.ndarray, mant_bits: int, min_exp: int, max_exp: int, fmt: str) -> np.ndarray:
    """Round float64 values to a binary format with `mant_bits` significand bits (RNE), returning the
    16-bit encodings.  Independent of NumPy's float16 code: quantize with np.rint at the value's
    quantum, then encode by hand.  Exact for the format's whole range, subnormals included."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(x.shape, dtype=np.uint16)
    sign = np.signbit(x)
    a = np.abs(x)
    with np.errstate(all="ignore"):
        _, e = np.frexp(a)  # a = m * 2^e, m in [0.5, 1)
        e = np.maximum(e - 1, min_exp)  # exponent of the leading bit, clamped to the subnormal range
        quantum = np.ldexp(1.0, e - (mant_bits - 1))
        r = np.rint(a / quantum) * quantum  # a / quantum is exact (power-of-2 scaling)
    exp_field_bits = 15 - (mant_bits - 1)
    bias = (1 << (exp_field_bits - 1)) - 1
    max_finite = np.ldexp(2.0 - 2.0 ** (1 - mant_bits), max_exp)
    finite = np.isfinite(x)
    overflow = finite & (r > max_finite)
    enc = np.zeros(x.shape, dtype=np.int64)
    ok = finite & ~overflow & (r > 0)
    re = r[ok]
    _, e2 = np.frexp(re)
    e2 = e2 - 1
    normal = e2 >= min_exp
    mant = np.where(
        normal,
        np.ldexp(re, -e2 + (mant_bits - 1)) - (1 << (mant_bits - 1)),
        np.ldexp(re, -min_exp + (mant_bits - 1)),
    )
    expf = np.where(normal, e2 + bias, 0)
    enc[ok] = (expf.astype(np.int64) << (mant_bits - 1)) | mant.astype(np.int64)
    inf_code = ((1 << exp_field_bits) - 1) << (mant_bits - 1)
    enc[overflow | np.isinf(x)] = inf_code
    enc[np.isnan(x)] = inf_code | (1 << (mant_bits - 2))
    out[:] = enc.astype(np.uint16) | np.where(sign, 0x8000, 0).astype(np.uint16)
    return out


def _round_half_ref(x: np.ndarray) -> np.ndarray:
    return _round_to_bits(x, 11, -14, 15, "half")


def _round_bfloat_ref(x: np.ndarray) -> np.ndarray:
    return _round_to_bits(x, 8, -126, 127, "bfloat")


def test_reference_rounding_agrees_with_numpy() -> None:
    """Our independent float64->half rounding must equal NumPy's float16 on all half midpoints."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(100000) * 10.0 ** rng.integers(-9, 6, 100000), [65519.99, 65520.0, 2.0**-25]])
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    assert np.array_equal(_round_half_ref(x), want)


def test_f32_to_half_and_bfloat(dump: Path) -> None:
    x = _load(dump, "f32_to_16.in0", np.float32)
    assert x.size > 1_000_000
    nan = np.isnan(x)
    with np.errstate(all="ignore"):
        want_half = x.astype(np.float16).view(np.uint16)
    _assert_bits_equal(_load(dump, "f32_to_16.half", np.uint16), want_half, x, "half(float)", nan)
    # bfloat: RNE on the float32 bits (x + 0x7fff + lsb) >> 16, computed in NumPy.
    bits = x.view(np.uint32).astype(np.uint64)
    want_bf = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    _assert_bits_equal(_load(dump, "f32_to_16.bfloat", np.uint16), want_bf, x, "bfloat(float)", nan)
    # ...and the independent float64 reference agrees on the finite inputs.
    fin = np.isfinite(x)
    assert np.array_equal(_round_bfloat_ref(x[fin].astype(np.float64)), want_bf[fin])


def test_f64_and_int_to_half_and_bfloat(dump: Path) -> None:
    d = _load(dump, "f64_to_16.in0", np.float64)
    nan = np.isnan(d)
    with np.errstate(all="ignore"):
        want_half = d.astype(np.float16).view(np.uint16)  # NumPy rounds double -> half directly
    _assert_bits_equal(_load(dump, "f64_to_16.half", np.uint16), want_half, d, "half(double)", nan)
    _assert_bits_equal(_load(dump, "f64_to_16.bfloat", np.uint16), _round_bfloat_ref(d), d, "bfloat(double)", nan)
    i = _load(dump, "i32_to_16.in0", np.int32)
    none = np.zeros(i.shape, dtype=bool)
    with np.errstate(over="ignore"):
        want_i = i.astype(np.float16).view(np.uint16)
    _assert_bits_equal(_load(dump, "i32_to_16.half", np.uint16), want_i, i, "half(int)", none)
    _assert_bits_equal(_load(dump, "i32_to_16.bfloat", np.uint16), _round_bfloat_ref(i.astype(np.float64)), i, "bfloat(int)", none)


def test_half_and_bfloat_to_float(dump: Path) -> None:
    bits = _load(dump, "from_16.in0", np.uint16)
    assert bits.size == 65536
    got_h = _load(dump, "from_16.half", np.float32)
    want_h = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(want_h)
    assert np.array_equal(got_h.view(np.uint32)[~nan], want_h.view(np.uint32)[~nan])
    assert np.isnan(got_h[nan]).all()
    got_b = _load(dump, "from_16.bfloat", np.float32)
    assert np.array_equal(got_b.view(np.uint32), bits.astype(np.uint32) << 16)


@pytest.mark.parametrize("fmt", ["half", "bfloat"])
def test_fp16_arithmetic_correctly_rounded(dump: Path, fmt: str) -> None:
    """+ - * / sqrt fma of half/bfloat equal the exactly computed result rounded once (RNE)."""
    name = f"{fmt}_arith"
    a, b, c = (_load(dump, f"{name}.in{k}", np.uint16) for k in range(3))
    if fmt == "half":
        to64 = lambda v: v.view(np.float16).astype(np.float64)  # noqa: E731
        ref = _round_half_ref
    else:
        to64 = lambda v: (v.astype(np.uint32) << 16).view(np.float32).astype(np.float64)  # noqa: E731
        ref = _round_bfloat_ref
    with np.errstate(invalid="ignore"):
        x, y, z = to64(a), to64(b), to64(c)
    with np.errstate(all="ignore"):
        # float64 results of + - * are exact for half and bfloat operands of similar exponent and the
        # products; for / and sqrt (and sums of far-apart exponents) float64 rounds once with
        # 53 >= 2*11+2 bits, so rounding again to half/bfloat is still correct (double rounding is
        # innocuous: Figueroa 1995).
        cases = {"add": x + y, "sub": x - y, "mul": x * y, "div": x / y, "sqrt": np.sqrt(x)}
    inputs = np.stack([a, b], axis=1)
    for op, exact in cases.items():
        got = _load(dump, f"{name}.{op}", np.uint16)
        _assert_bits_equal(got, ref(exact), inputs, f"{fmt} {op}", np.isnan(exact))
    # fma: exact via Python fractions on a sample of finite triples (float64 cannot hold x*y+z exactly).
    from fractions import Fraction

    got = _load(dump, f"{name}.fma", np.uint16)
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y) & np.isfinite(z))[:4000]
    want = []
    for i in finite:
        exact = Fraction(float(x[i])) * Fraction(float(y[i])) + Fraction(float(z[i]))
        # Round the exact rational: float64 nearest, then nudge to round-to-odd so the final RNE is exact.
        f = float(exact)
        if Fraction(f) != exact and f != 0 and np.isfinite(f):
            fb = np.float64(f).view(np.int64)
            if fb & 1 == 0:
                toward = np.nextafter(f, np.inf if exact > Fraction(f) else -np.inf)
                f = float(toward)
        want.append(f)
    want_bits = ref(np.array(want))
    got_sel = got[finite]
    zero_sign_ok = (want_bits & 0x7FFF) == 0  # an exact zero's sign: fma sign rules, not compared
    bad = (got_sel != want_bits) & ~(zero_sign_ok & ((got_sel & 0x7FFF) == 0))
    assert not bad.any(), f"{fmt} fma: {bad.sum()} differ, e.g. index {finite[np.flatnonzero(bad)[:5]]}"


def _ulp_distance_f32(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in float32 ULPs (ordered integer mapping of the bit patterns)."""

    def ordered(v: np.ndarray) -> np.ndarray:
        i = v.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    return np.abs(ordered(got) - ordered(want))


# Tolerances in float32 ULPs against the float64 NumPy result rounded to float32.  Exact functions
# must match bit for bit.  Transcendentals use the host libm float functions: glibc documents at most
# 1 ulp for these on x86-64/aarch64 (2 for tgamma-like functions we do not use); we allow 2 to cover
# other libms (macOS).  All are within MSL's precise bounds (exp/log/sin/cos 4 ulp, pow 16 ulp).
FLOAT_UNARY = {
    "exp": (np.exp, 2), "exp2": (np.exp2, 2), "exp10": (lambda v: np.power(10.0, v), 2),
    "log": (np.log, 2), "log2": (np.log2, 2), "log10": (np.log10, 2),
    "sqrt": (np.sqrt, 0), "rsqrt": (lambda v: 1.0 / np.sqrt(v), 1),
    "sin": (np.sin, 2), "cos": (np.cos, 2), "tan": (np.tan, 2), "tanh": (np.tanh, 2),
    "sinh": (np.sinh, 2), "cosh": (np.cosh, 2), "asin": (np.arcsin, 2), "acos": (np.arccos, 2),
    "atan": (np.arctan, 2),
    "floor": (np.floor, 0), "ceil": (np.ceil, 0), "trunc": (np.trunc, 0), "rint": (np.rint, 0),
    "round": (lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5), 0), "fabs": (np.abs, 0),
    "fract": (lambda v: np.minimum(v - np.floor(v), np.float64(np.nextafter(np.float32(1), np.float32(0)))), 0),
    "sign": (np.sign, 0), "saturate": (lambda v: np.clip(v, 0.0, 1.0), 0),
    "sinpi": (lambda v: np.sin(np.pi * np.fmod(v, 2.0)), 2), "cospi": (lambda v: np.cos(np.pi * np.fmod(v, 2.0)), 2),
}
FLOAT_BINARY = {
    "pow": (np.power, 2), "atan2": (np.arctan2, 2), "fmod": (np.fmod, 0),
    "fmin": (np.fmin, 0), "fmax": (np.fmax, 0), "copysign": (np.copysign, 0),
}


def _check_float(got: np.ndarray, want64: np.ndarray, x: np.ndarray, name: str, tol: int) -> None:
    with np.errstate(all="ignore"):
        want = want64.astype(np.float32)
    nan = np.isnan(want)
    assert np.isnan(got[nan]).all(), f"{name}: NaN expected"
    # sinpi/cospi reference loses accuracy near zeros (pi * v in float64); skip results below 1e-6.
    keep = ~nan
    if name in ("sinpi", "cospi", "tan"):
        keep &= np.abs(want) > 1e-6
    d = _ulp_distance_f32(got[keep], want[keep])
    if d.size and d.max() > tol:
        i = np.flatnonzero(keep)[np.argmax(d)]
        raise AssertionError(f"{name}: {d.max()} ulp > {tol} at x={x[i]!r}: got {got[i]!r} want {want[i]!r}")


@pytest.mark.parametrize("name", sorted(FLOAT_UNARY))
def test_float_unary_math(dump: Path, name: str) -> None:
    x = _load(dump, "fmath.in0", np.float32)
    fn, tol = FLOAT_UNARY[name]
    with np.errstate(all="ignore"):
        want = fn(x.astype(np.float64))
    _check_float(_load(dump, f"fmath.{name}", np.float32), want, x, name, tol)


@pytest.mark.parametrize("name", sorted(FLOAT_BINARY))
def test_float_binary_math(dump: Path, name: str) -> None:
    x = _load(dump, "fmath.in0", np.float32)
    y = _load(dump, "fmath.in1", np.float32)
    fn, tol = FLOAT_BINARY[name]
    with np.errstate(all="ignore"):
        want = fn(x.astype(np.float64), y.astype(np.float64))
        if name in ("fmin", "fmax", "copysign", "fmod"):
            want = fn(x, y).astype(np.float64)  # exact in float32 already
    _check_float(_load(dump, f"fmath.{name}", np.float32), want, x, name, tol)


def test_float_fma_is_fused(dump: Path) -> None:
    from fractions import Fraction

    x, y, z = (_load(dump, f"fmath.in{k}", np.float32) for k in range(3))
    got = _load(dump, "fmath.fma", np.float32)
    sel = np.flatnonzero(np.isfinite(x) & (np.abs(x) < 1e30))[:3000]
    for i in sel:
        exact = Fraction(float(x[i])) * Fraction(float(y[i])) + Fraction(float(z[i]))
        # float32(float64(exact)) can double-round; compare within 0 ulp except on exact float64 ties.
        want = np.float32(float(exact))
        d = _ulp_distance_f32(np.array([got[i]]), np.array([want]))[0]
        assert d <= 1 and (d == 0 or Fraction(float(exact)) != exact), (x[i], y[i], z[i], got[i], want)


HALF_MATH = {
    "exp": (np.exp, 1), "exp2": (np.exp2, 1), "log": (np.log, 1), "sin": (np.sin, 1), "cos": (np.cos, 1),
    "tanh": (np.tanh, 1), "rsqrt": (lambda v: 1.0 / np.sqrt(v), 1), "sqrt": (np.sqrt, 0), "floor": (np.floor, 0),
    # fract(+-inf) is 0 here (documented choice; the MSL formula would give NaN - floor(NaN)).
    "fract": (lambda v: np.where(np.isinf(v), 0.0, np.minimum(v - np.floor(v), 1.0 - 2.0**-11)), 0),
}


@pytest.mark.parametrize("name", sorted(HALF_MATH))
def test_half_math_all_inputs(dump: Path, name: str) -> None:
    """Every half input: within 1 half ulp of the float64 result (computed in float, rounded once:
    the float error, <= 2 float ulp, can flip a rounding only within 2^-12 ulp of a half midpoint,
    giving at most 1 half ulp); exact functions bit for bit."""
    bits = _load(dump, "hmath.in0", np.uint16)
    x = bits.view(np.float16).astype(np.float64)
    fn, tol = HALF_MATH[name]
    with np.errstate(all="ignore"):
        want = fn(x).astype(np.float16)
    got = _load(dump, f"hmath.{name}", np.uint16).view(np.float16)
    nan = np.isnan(want)
    assert np.isnan(got[nan]).all(), f"half {name}: NaN expected"

    def ordered(v: np.ndarray) -> np.ndarray:
        i = v.view(np.int16).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFF), i)

    d = np.abs(ordered(got[~nan]) - ordered(want[~nan]))
    if d.size and d.max() > tol:
        i = np.flatnonzero(~nan)[np.argmax(d)]
        raise AssertionError(f"half {name}: {d.max()} ulp at x={x[i]!r}: got {got[i]!r} want {want[i]!r}")
