"""Every example (examples/*.py) runs, as a user would run it, on the tiny random model with small
limits; the chat's tool-calling loop; Ctrl-C in the command line.

The generate output is compared with the library's own greedy generation, so a wrong stream (lost
or duplicated text) fails. A decode step costs ~0.5 s on the CPU execution layer: limits are 2-3.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], input=stdin, capture_output=True, text=True, timeout=600,
        env={**os.environ, **(env or {})},
    )


def greedy_text(model_path: Path, prompt: str, limit: int) -> str:
    from gpt_oss_metal import Context, Model

    with Model(model_path) as model, Context(model, context_length=64) as ctx:
        ctx.append(prompt)
        return "".join(piece.text for piece in ctx.generate(limit, temperature=0.0))


@pytest.fixture(scope="module")
def demo_cache(tiny_model_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment whose cache directory already holds the demo model (a link to the tiny model),
    so runs without MODEL do not write a new 130 MB file."""
    from gpt_oss_metal.testing.demo import DEMO_MODEL_VERSION

    cache = tmp_path_factory.mktemp("xdg-cache")
    target = cache / "gpt-oss-metal" / f"tiny-random-v{DEMO_MODEL_VERSION}" / "model.bin"
    target.parent.mkdir(parents=True)
    target.symlink_to(tiny_model_bin)
    return {"XDG_CACHE_HOME": str(cache)}


def test_generate_example_streams_the_librarys_tokens(tiny_model_bin: Path) -> None:
    result = run_example("generate.py", str(tiny_model_bin), "-p", "Hello", "-l", "3", "--temperature", "0",
                         "--context-length", "64")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello" + greedy_text(tiny_model_bin, "Hello", 3) + "\n"
    assert "prefill: 1 tokens in" in result.stderr and "decode: 3 tokens in" in result.stderr
    assert "tokens/s" in result.stderr and "RANDOM" not in result.stderr


def test_generate_example_without_model_says_the_output_is_random(demo_cache: dict[str, str]) -> None:
    result = run_example("generate.py", "-l", "2", "-p", "Hi", env=demo_cache)
    assert result.returncode == 0, result.stderr
    assert "RANDOM" in result.stderr and "decode: 2 tokens" in result.stderr
    assert result.stdout.startswith("Hi")


def test_generate_example_errors_are_clean(tmp_path: Path) -> None:
    result = run_example("generate.py", str(tmp_path / "missing.bin"), "-l", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("gpt-oss-metal: error: ") and "missing.bin" in result.stderr


def test_chat_example_reads_stdin(tiny_model_bin: Path) -> None:
    result = run_example("chat.py", str(tiny_model_bin), "-l", "2", "--reasoning-effort", "low",
                         stdin="Hello there\n\n/quit\nnever read\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("user> ") == 3  # the message, the empty line, /quit
    assert "prefill:" in result.stderr and "decode: 2 tokens" in result.stderr
    assert "never read" not in result.stdout


def test_chat_example_one_message_and_end_of_input(tiny_model_bin: Path) -> None:
    result = run_example("chat.py", str(tiny_model_bin), "-l", "2", "-p", "Hi")
    assert result.returncode == 0, result.stderr
    assert "user> " not in result.stdout and "decode: 2 tokens" in result.stderr
    result = run_example("chat.py", str(tiny_model_bin), "-l", "1", stdin="")  # end of input at once
    assert result.returncode == 0 and result.stdout == "user> \n", result.stderr


def test_inspect_model_example(tiny_model_bin: Path) -> None:
    result = run_example("inspect_model.py", str(tiny_model_bin), "-p", "Hello world")
    assert result.returncode == 0, result.stderr
    assert "Hello world' -> 2 tokens" in result.stdout


def test_ctrl_c_stops_generation_with_status_130(tiny_model_bin: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "generate.py"), str(tiny_model_bin), "-p", "Hi", "-l", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout.read(2) == "Hi"  # generation has started
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)  # 200 tokens would take ~100 s
    assert process.returncode == 130, err
    assert err.strip().endswith("gpt-oss-metal: interrupted") and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# The chat's tool loop, driven by scripted completions (the random model never calls tools)
# --------------------------------------------------------------------------------------------


class ScriptedContext:
    """Just enough of Context for chat_turn, with completions given as harmony text per round."""

    def __init__(self, model, completions: list[str]) -> None:
        self.model = model
        self.completions = iter(completions)
        self.prompts: list[list[int]] = []
        self._tokens: list[int] = []

    @property
    def num_tokens(self) -> int:
        return len(self._tokens)

    def reset(self) -> None:
        self._tokens = []

    def append(self, tokens: list[int]) -> None:
        self._tokens += tokens
        self.prompts.append(list(tokens))

    def process(self) -> None:
        pass

    def generate(self, limit: int, **options) -> Iterator[object]:
        from gpt_oss_metal import GeneratedToken

        tokens = self.model.tokenizer.encode(next(self.completions), allowed_special="all")[:limit]
        for token in tokens:
            text = "" if token >= self.model.tokenizer.num_text_tokens else self.model.tokenizer.decode(token).decode()
            yield GeneratedToken(token, text)


def test_chat_turn_runs_tool_calls_and_continues(tiny_model_bin: Path) -> None:
    from gpt_oss_metal import Model
    from gpt_oss_metal.cli_generate import chat_turn, demo_tools
    from gpt_oss_metal.harmony import Conversation, render_prompt

    model = Model(tiny_model_bin)
    conversation = Conversation(reasoning_effort="high", tools=demo_tools()).add_user("Time in UTC+2?")
    ctx = ScriptedContext(model, [
        "<|channel|>analysis<|message|>Need the tool.<|end|>"
        '<|start|>assistant<|channel|>commentary to=functions.get_current_time <|constrain|>json<|message|>'
        '{"utc_offset_hours": 2}<|call|>',
        "<|channel|>final<|message|>It is late.<|return|>",
    ])
    calls = []

    def tool(call):
        calls.append(call)
        return {"time": "2026-01-01T00:00:00+02:00"}

    out, err = io.StringIO(), io.StringIO()
    chat_turn(ctx, conversation, limit=100, temperature=0.0, seed=0, out=out, err=err, run_tool=tool)
    assert [c.parsed_arguments for c in calls] == [{"utc_offset_hours": 2}]
    shown = out.getvalue()
    assert "[reasoning] Need the tool." in shown and "assistant: It is late." in shown
    assert "functions.get_current_time returned" in shown
    # The second round's prompt holds the call's result; the conversation ends with the answer.
    assert "2026-01-01T00:00:00+02:00" in model.tokenizer.decode(
        [t for t in ctx.prompts[1] if t < model.tokenizer.num_text_tokens]).decode()
    assert [m.role for m in conversation.messages] == ["user", "assistant", "assistant", "tool", "assistant"]
    assert conversation.messages[-1].text == "It is late." and conversation.messages[-1].channel == "final"
    assert ctx.prompts[0] == render_prompt(Conversation(reasoning_effort="high", tools=demo_tools()).add_user("Time in UTC+2?"))


def test_call_demo_tool() -> None:
    from gpt_oss_metal.cli_generate import call_demo_tool
    from gpt_oss_metal.harmony import ToolCall

    def call(arguments: str, recipient: str = "functions.get_current_time") -> dict:
        import json

        try:
            parsed, valid = json.loads(arguments), True
        except ValueError:
            parsed, valid = None, False
        return call_demo_tool(ToolCall(recipient, arguments, parsed_arguments=parsed, arguments_valid=valid))

    assert call("{}")["time"].endswith("+00:00")
    assert call('{"utc_offset_hours": -5.5}')["time"].endswith("-05:30")
    assert "error" in call('{"utc_offset_hours": 99}') and "error" in call('"x"')
    assert "unknown tool" in call("{}", recipient="functions.launch_rockets")["error"]
