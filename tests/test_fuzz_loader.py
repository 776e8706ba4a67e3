"""Fuzz the C model loader (metal/source/model.c, model-file.c, tokenizer.c) with hypothesis.

Starting from the valid tiny model.bin (tests/conftest.py), hypothesis mutates header fields (u32 and
f32, with boundary values), the magic and the UUIDs, the tokenizer header's counts and sizes, the
special-token UUIDs, the regex, token-table lengths and bytes, the section padding and the start of
the weights, and truncates the file or appends bytes to it. Each mutated file is loaded in-process
through the C loader (``_metal.Model``) and, when it loads, its tokenizer is exercised (encode and
decode). The property: the load either succeeds or raises a specific exception class defined in
``gpt_oss_metal.errors`` (ModelFileError, UnsupportedArgumentError, GptOssIOError, ...) — never
a crash, a hang, the unspecific base class or any other exception.

The fuzz loop runs in a subprocess (this file run as a script), so that a crash (SIGSEGV, SIGBUS, an
ASan/UBSan abort under scripts/test-sanitizers.sh) or a hang fails the test instead of killing
pytest. Before each load the mutation is written to ``current.json``; on a crash, hang or failed
property it is saved under build/fuzz-reproducers/ and named in the failure. Replay one with

    python tests/test_fuzz_loader.py --model path/to/tiny/model.bin --reproduce build/fuzz-reproducers/loader-....json

(the tiny model: ``python -m gpt_oss_metal.testing.checkpoints`` / conftest's ``tiny_model_bin``).

Budget: GPTOSS_FUZZ_SECONDS (default 40) seconds of fuzzing, or exactly GPTOSS_FUZZ_EXAMPLES examples
when that is set; hypothesis keeps failing examples in build/hypothesis (docs/testing.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPRODUCERS = ROOT / "build" / "fuzz-reproducers"
HYPOTHESIS_DB = ROOT / "build" / "hypothesis"
DEFAULT_SECONDS = 40.0


def fuzz_budget() -> tuple[float, int | None]:
    """(seconds, examples): a fixed number of examples when GPTOSS_FUZZ_EXAMPLES is set, else a time budget."""
    examples = os.environ.get("GPTOSS_FUZZ_EXAMPLES")
    seconds = float(os.environ.get("GPTOSS_FUZZ_SECONDS", DEFAULT_SECONDS))
    return seconds, (int(examples) if examples else None)


def specific_error_classes() -> tuple[type[BaseException], ...]:
    """Every exception class defined in gpt_oss_metal.errors except the unspecific base class."""
    from gpt_oss_metal import errors

    return tuple(
        value for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, BaseException)
        and value.__module__ == errors.__name__ and value is not errors.GptOssError
    )


# ---------------------------------------------------------------- mutations (plain data: JSON-able)
# A mutation is {"patches": [[offset, hex], ...], "truncate": int | None, "append": hex}; patches are
# applied in order to a copy of the original file, then the file is cut to `truncate` bytes, then
# `append` is added.


def apply_mutation(original: Path, out: Path, mutation: dict) -> None:
    """Write the mutated file to `out` (a fresh file; used by --reproduce)."""
    data = bytearray(original.read_bytes())
    for offset, hexdata in mutation["patches"]:
        chunk = bytes.fromhex(hexdata)
        if offset + len(chunk) > len(data):
            data.extend(b"\0" * (offset + len(chunk) - len(data)))
        data[offset:offset + len(chunk)] = chunk
    if mutation.get("truncate") is not None:
        del data[mutation["truncate"]:]
    data += bytes.fromhex(mutation.get("append", ""))
    out.write_bytes(bytes(data))


class WorkFile:
    """A copy of the original model.bin that is mutated in place and restored after each load
    (copying ~130 MB per example would dominate the budget)."""

    def __init__(self, original: Path, directory: Path) -> None:
        self.original = original
        self.size = original.stat().st_size
        self.path = directory / "model.bin"
        self.small = directory / "truncated.bin"
        shutil.copyfile(original, self.path)

    def _restore_tail(self, start: int) -> None:
        with open(self.original, "rb") as src, open(self.path, "r+b") as dst:
            src.seek(start)
            dst.seek(start)
            shutil.copyfileobj(src, dst, 1 << 22)

    def load_with(self, mutation: dict, check) -> None:
        saved = []
        with open(self.path, "r+b") as f:
            for offset, hexdata in mutation["patches"]:
                chunk = bytes.fromhex(hexdata)
                f.seek(offset)
                saved.append((offset, f.read(len(chunk))))
                f.seek(offset)
                f.write(chunk)
        truncate = mutation.get("truncate")
        append = bytes.fromhex(mutation.get("append", ""))
        target = self.path
        try:
            if truncate is not None and truncate < self.size // 2:
                # A short file is cheaper to write afresh than the original's tail to restore.
                with open(self.path, "rb") as f:
                    head = f.read(truncate)
                self.small.write_bytes(head + append)
                target = self.small
            else:
                if truncate is not None:
                    os.truncate(self.path, truncate)
                if append:
                    with open(self.path, "ab") as f:
                        f.write(append)
            check(target)
        finally:
            if target == self.path and (truncate is not None or append):
                os.truncate(self.path, truncate if truncate is not None else self.size)
                if truncate is not None:
                    self._restore_tail(truncate)
            with open(self.path, "r+b") as f:
                for offset, chunk in reversed(saved):
                    f.seek(offset)
                    f.write(chunk)
            assert self.path.stat().st_size == self.size


def load_and_exercise(path: Path) -> str:
    """Load through the C loader; on success use the tokenizer. Returns 'loaded' or the error class
    name; raises AssertionError for anything but a specific gpt_oss_metal.errors exception."""
    from gpt_oss_metal import _metal

    allowed = specific_error_classes()
    try:
        model = _metal.Model(str(path))
    except allowed as error:
        return type(error).__name__
    except BaseException as error:  # noqa: BLE001 - the property is about exactly this
        raise AssertionError(f"loading raised {type(error).__module__}.{type(error).__name__}: {error}") from error
    try:
        _ = model.header, model.layout, model.max_context_length
        tokenizer = model.tokenizer
        n = tokenizer.num_text_tokens
        for token in {0, 1, n // 2, n - 1}:
            if 0 <= token < n:
                tokenizer.decode(token)
        for text in ("Hello, world! 123", "  \n\t x", "日本語 émoji 👍🏽"):
            ids = tokenizer.encode_c(text)
            assert all(0 <= i < n for i in ids), ids
    except allowed:
        pass  # e.g. a token table that loads but cannot encode: a specific error is fine
    except BaseException as error:  # noqa: BLE001
        raise AssertionError(f"using the loaded model raised {type(error).__module__}.{type(error).__name__}: {error}") from error
    finally:
        model.close()
    return "loaded"


# ---------------------------------------------------------------- hypothesis strategies

def mutation_strategy(original: Path):
    from hypothesis import strategies as st

    from gpt_oss_metal import model_bin

    mb = model_bin.read_model_bin(str(original))
    layout = mb.layout
    size = original.stat().st_size
    with open(original, "rb") as f:
        head = f.read(layout.weights_offset + 4096)
    num_special, num_text, regex_size, tokens_size = struct.unpack_from("<4I", head, model_bin.TOKENIZER_HEADER_OFFSET)
    token_entries = []  # offsets of the u16 length of every text token
    pos = layout.tokens_offset
    for _ in range(num_text):
        token_entries.append(pos)
        pos += 2 + struct.unpack_from("<H", head, pos)[0]
    fields = [(f.name, "I" if f.type in ("int", int) else "f") for f in model_bin.dataclasses.fields(model_bin.ModelHeader)]
    u32_offsets = [model_bin.HEADER_OFFSET + 4 * i for i, (_, kind) in enumerate(fields) if kind == "I"]
    u32_offsets += [model_bin.TOKENIZER_HEADER_OFFSET + 4 * i for i in range(4)]
    f32_offsets = [model_bin.HEADER_OFFSET + 4 * i for i, (_, kind) in enumerate(fields) if kind == "f"]
    uuid_offsets = [16, 100, 116] + [model_bin.SPECIAL_UUIDS_OFFSET + 16 * i for i in range(num_special)]
    known_uuids = [model_bin.MODEL_UUID.bytes, model_bin.LAYOUT_UUID.bytes, model_bin.TOKENIZER_UUID.bytes,
                   b"\0" * 16, *[u.bytes for u in model_bin.SPECIAL_TOKEN_UUIDS.values()]]
    regions = [  # (start, end) of byte ranges worth corrupting
        (0, 16), (16, 32), (model_bin.HEADER_OFFSET, 100), (100, model_bin.TOKENIZER_HEADER_OFFSET + 16),
        (model_bin.SPECIAL_UUIDS_OFFSET, layout.regex_offset), (layout.regex_offset, layout.tokens_offset),
        (layout.tokens_offset, layout.tokens_offset + 4096),
        (layout.tokens_offset + tokens_size - 4096, layout.tokens_offset + tokens_size),
        (layout.tokens_offset, layout.tokens_offset + tokens_size), (layout.tokens_offset + tokens_size, layout.weights_offset),
    ]
    boundaries = sorted({0, 15, 16, 32, 100, 132, 148, layout.regex_offset, layout.tokens_offset,
                         layout.tokens_offset + tokens_size, layout.weights_offset,
                         *[o for o in layout.moe_offsets], layout.file_size, size,
                         *[spec.offset for spec in list(layout.tensors.values())[:40]],
                         *[spec.end for spec in list(layout.tensors.values())[-3:]]})

    def u32_values(offset: int):
        current = struct.unpack_from("<I", head, offset)[0]
        interesting = [0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 1023, 1024,
                       4095, 4096, 65535, 65536, 2**24, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1,
                       (current + 1) % 2**32, (current - 1) % 2**32, current * 2 % 2**32, current // 2]
        return st.one_of(st.sampled_from(interesting), st.integers(0, 2**32 - 1))

    u32_patch = st.sampled_from(u32_offsets).flatmap(
        lambda off: u32_values(off).map(lambda v: [off, struct.pack("<I", v).hex()]))
    f32_patch = st.tuples(st.sampled_from(f32_offsets), st.floats(width=32)).map(
        lambda t: [t[0], struct.pack("<f", t[1]).hex()])
    uuid_patch = st.tuples(st.sampled_from(uuid_offsets),
                           st.one_of(st.sampled_from(known_uuids), st.binary(min_size=16, max_size=16))).map(
        lambda t: [t[0], t[1].hex()])
    byte_patch = st.sampled_from(regions).flatmap(
        lambda r: st.tuples(st.integers(r[0], max(r[0], r[1] - 1)), st.binary(min_size=1, max_size=16))).map(
        lambda t: [t[0], t[1].hex()])
    bit_flip = st.tuples(st.integers(0, layout.weights_offset - 1), st.integers(0, 7)).map(
        lambda t: [t[0], bytes([head[t[0]] ^ (1 << t[1])]).hex()])
    token_length = st.tuples(st.sampled_from(token_entries[:64] + token_entries[-64:]) | st.sampled_from(token_entries),
                             st.sampled_from([0, 1, 2, 127, 128, 255, 256, 1000, 65534, 65535]) | st.integers(0, 65535)).map(
        lambda t: [t[0], struct.pack("<H", t[1]).hex()])
    regex_text = st.one_of(
        st.sampled_from(["", "a", ".", "(", "[", "\\", "(?i)", "\\p{L}+", "(?=x)", "a{99999}", "[^\\s]+|\\s+"]),
        st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=64),
        st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    )
    regex_patch = regex_text.map(lambda s: [layout.regex_offset,
                                            (s.encode("latin-1", errors="replace") + b"\0")[:regex_size].hex()])
    patch = st.one_of(u32_patch, u32_patch, f32_patch, uuid_patch, byte_patch, byte_patch, bit_flip,
                      token_length, regex_patch)
    truncate = st.one_of(
        st.none(), st.none(), st.none(),
        st.integers(0, layout.weights_offset + 64),
        st.sampled_from(boundaries).flatmap(lambda b: st.integers(max(0, b - 2), min(size - 1, b + 2))),
    )
    append = st.one_of(st.just(""), st.just(""), st.binary(min_size=1, max_size=64).map(bytes.hex))
    return st.fixed_dictionaries({
        "patches": st.lists(patch, min_size=0, max_size=4),
        "truncate": truncate,
        "append": append,
    })


# ---------------------------------------------------------------- the fuzz loop (subprocess)

def run_fuzz(model: Path, work: Path, seconds: float, examples: int | None) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    work.mkdir(parents=True, exist_ok=True)
    current = work / "current.json"
    work_file = WorkFile(model, work)
    strategy = mutation_strategy(model)
    outcomes: dict[str, int] = {}

    def one(mutation: dict) -> None:
        current.write_text(json.dumps(mutation))
        result: list[str] = []
        work_file.load_with(mutation, lambda path: result.append(load_and_exercise(path)))
        outcomes[result[0]] = outcomes.get(result[0], 0) + 1

    started = time.monotonic()
    total = 0
    batch = 50 if examples is None else examples
    while True:
        test = settings(max_examples=batch, deadline=None, derandomize=False,
                        database=DirectoryBasedExampleDatabase(str(HYPOTHESIS_DB / "loader")),
                        suppress_health_check=list(HealthCheck), print_blob=True)(given(strategy)(one))
        test()
        total += batch
        if examples is not None or time.monotonic() - started >= seconds:
            break
    print(f"FUZZ-OK examples={total} seconds={time.monotonic() - started:.1f} outcomes={json.dumps(outcomes, sort_keys=True)}")
    return 0


def reproduce(model: Path, mutation_file: Path) -> int:
    mutation = json.loads(mutation_file.read_text())
    out = mutation_file.with_suffix(".bin")
    apply_mutation(model, out, mutation)
    print(f"mutated file: {out}")
    print(load_and_exercise(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the valid tiny model.bin to mutate")
    parser.add_argument("--work", type=Path, help="directory for the work copy and current.json")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--examples", type=int)
    parser.add_argument("--reproduce", type=Path, help="replay one saved mutation (JSON)")
    args = parser.parse_args(argv)
    if args.reproduce:
        return reproduce(args.model, args.reproduce)
    return run_fuzz(args.model, args.work, args.seconds, args.examples)


# ---------------------------------------------------------------- pytest

def run_fuzz_subprocess(kind: str, argv: list[str], work: Path, seconds: float, timeout: float) -> str:
    """Run a fuzz loop script in a subprocess; on a crash, hang or failure save the current input
    under build/fuzz-reproducers and fail with it. Returns the subprocess's stdout."""
    import pytest

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    started = time.monotonic()
    try:
        run = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, env=env,
                             cwd=str(ROOT))
        stdout, stderr, code = run.stdout, run.stderr, run.returncode
    except subprocess.TimeoutExpired as expired:
        stdout = expired.stdout.decode(errors="replace") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        stderr = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else (expired.stderr or "")
        code = "timeout"
    print(f"{kind} fuzz: {time.monotonic() - started:.0f} s; {stdout.strip().splitlines()[-1] if stdout.strip() else ''}")
    if code == 0 and "FUZZ-OK" in stdout:
        return stdout
    saved = ""
    current = work / "current.json"
    if current.is_file():
        REPRODUCERS.mkdir(parents=True, exist_ok=True)
        target = REPRODUCERS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
        shutil.copyfile(current, target)
        saved = f"\nlast input (saved to {target}):\n{current.read_text()[:4000]}"
    if isinstance(code, int) and code < 0:
        what = f"the fuzz subprocess crashed with signal {signal.Signals(-code).name}"
    elif code == "timeout":
        what = f"the fuzz subprocess hung (no result after {timeout:.0f} s)"
    else:
        what = f"the fuzz subprocess failed (exit status {code})"
    pytest.fail(f"{what}{saved}\n--- stdout ---\n{stdout[-6000:]}\n--- stderr ---\n{stderr[-8000:]}", pytrace=False)
    return stdout


def test_fuzz_loader(tiny_model_bin: Path, tmp_path: Path) -> None:
    """Mutated model.bin files load or raise a specific gpt_oss_metal.errors exception; no crash or hang."""
    seconds, examples = fuzz_budget()
    argv = [str(Path(__file__)), "--model", str(tiny_model_bin), "--work", str(tmp_path), "--seconds", str(seconds)]
    if examples is not None:
        argv += ["--examples", str(examples)]
    stdout = run_fuzz_subprocess("loader", argv, tmp_path, seconds, timeout=max(300.0, 5 * seconds + 120))
    outcomes = json.loads(stdout.split("outcomes=", 1)[1].splitlines()[0])
    assert sum(outcomes.values()) > 0
    # The strategies reach both sides: some mutations still load, most are refused.
    assert any(name != "loaded" for name in outcomes), outcomes


if __name__ == "__main__":
    sys.exit(main())
