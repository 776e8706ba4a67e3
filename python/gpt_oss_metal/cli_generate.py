"""``gpt-oss-metal generate`` and ``gpt-oss-metal chat``, also behind ``examples/generate.py`` and
``examples/chat.py`` (thin wrappers over :func:`gpt_oss_metal.cli.main`).

:mod:`gpt_oss_metal.cli` parses the arguments and calls :func:`run_generate` / :func:`run_chat`
with the parsed namespace:

* both: ``model`` (path of a model.bin, or None for the small random demo model), ``limit``
  (most tokens to generate per answer; None: a default, small for the demo model), ``temperature``
  (0 = greedy), ``seed``, ``context_length`` (0 = the model's maximum), ``prompt``;
* chat only: ``reasoning_effort`` ("low" | "medium" | "high"); ``prompt`` None means interactive
  (user messages are read line by line from standard input until end of input or ``/quit``).

Generated text goes to standard output as it arrives; notes and speed figures go to standard error.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TextIO

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .context import Context
    from .harmony import Conversation, FunctionTool, ToolCall

__all__ = [
    "run_generate",
    "run_chat",
    "resolve_model",
    "generate_text",
    "GenerationStats",
    "chat_turn",
    "demo_tools",
    "call_demo_tool",
]

#: Tokens per answer when no limit is given: small for the random demo model, whose tokens cost
#: ~0.5 s each on the CPU execution layer and mean nothing anyway.
DEFAULT_LIMIT = {"generate": 100, "chat": 1024}
DEMO_LIMIT = {"generate": 16, "chat": 24}
#: Most tool calls answered in one chat turn before the turn is cut off.
MAX_TOOL_ROUNDS = 4


def resolve_model(path: str | None, err: TextIO) -> str:
    """``path``, or the small random demo model (created on first use) with a plain warning."""
    if path is not None:
        os.stat(path)  # a missing file is an OSError naming the path, whatever bytes the name holds
        return path
    from .testing.demo import default_demo_model

    demo = default_demo_model()
    print(
        f"No model given: using the small demo model {demo}. Its weights are RANDOM, so its output is "
        "random tokens, not language. Pass a model.bin (see `gpt-oss-metal download`) for real text.",
        file=err,
    )
    return demo


def _limit(args: argparse.Namespace, command: str) -> int:
    if getattr(args, "limit", None) is not None:
        return int(args.limit)
    return (DEMO_LIMIT if args.model is None else DEFAULT_LIMIT)[command]


# --------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------


@dataclass
class GenerationStats:
    """Token counts and wall-clock seconds of a prefill (prompt) and a decode (generated tokens)."""

    prompt_tokens: int = 0
    prefill_seconds: float = 0.0
    generated_tokens: int = 0
    decode_seconds: float = 0.0

    @staticmethod
    def _rate(tokens: int, seconds: float) -> str:
        return f"{tokens / seconds:.2f} tokens/s" if seconds > 0 and tokens else "n/a"

    def summary(self) -> str:
        return (
            f"prefill: {self.prompt_tokens} tokens in {self.prefill_seconds:.2f} s "
            f"({self._rate(self.prompt_tokens, self.prefill_seconds)}); "
            f"decode: {self.generated_tokens} tokens in {self.decode_seconds:.2f} s "
            f"({self._rate(self.generated_tokens, self.decode_seconds)})"
        )


def generate_text(
    context: Context,
    prompt: str | list[int],
    *,
    limit: int,
    temperature: float = 1.0,
    seed: int = 0,
    stop_tokens: tuple[int, ...] = (),
    on_text: Callable[[str], Any] | None = None,
) -> tuple[list[int], GenerationStats]:
    """Append ``prompt`` to ``context``, process it (timed as prefill), then stream up to ``limit``
    tokens (timed as decode), passing each piece of text to ``on_text``. Returns the generated
    tokens and the timings."""
    stats = GenerationStats()
    before = context.num_tokens
    context.append(prompt)
    stats.prompt_tokens = context.num_tokens - before
    if context.num_tokens == 0:
        raise InvalidArgumentError("generate: the prompt is empty: there is nothing to continue from (use -p TEXT)")
    start = time.perf_counter()
    context.process()
    stats.prefill_seconds = time.perf_counter() - start
    tokens: list[int] = []
    start = time.perf_counter()
    for piece in context.generate(limit, temperature=temperature, seed=seed, stop_tokens=stop_tokens):
        tokens.append(piece.token)
        if on_text is not None and piece.text:
            on_text(piece.text)
    stats.decode_seconds = time.perf_counter() - start
    stats.generated_tokens = len(tokens)
    return tokens, stats


def run_generate(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Continue ``args.prompt`` with up to ``args.limit`` tokens, printing them as they arrive,
    then the prefill and decode speeds (on standard error)."""
    from .context import Context
    from .model import Model

    out = out or sys.stdout
    err = err or sys.stderr
    path = resolve_model(args.model, err)
    with Model(path) as model, Context(model, context_length=args.context_length) as context:
        special = model.tokenizer.special_tokens
        stops = tuple(special[name] for name in ("<|endoftext|>", "<|return|>") if name in special)
        out.write(args.prompt)
        out.flush()

        def show(text: str) -> None:
            out.write(text)
            out.flush()

        _, stats = generate_text(
            context, args.prompt, limit=_limit(args, "generate"), temperature=args.temperature, seed=args.seed,
            stop_tokens=stops, on_text=show,
        )
        out.write("\n")
        out.flush()
        print(stats.summary(), file=err)
    return 0


# --------------------------------------------------------------------------------------------
# chat
# --------------------------------------------------------------------------------------------


def demo_tools() -> tuple[FunctionTool, ...]:
    """The function tools the chat offers the model (a demonstration of function calling)."""
    from .harmony import FunctionTool

    return (
        FunctionTool(
            name="get_current_time",
            description="Current date and time. Optionally in another time zone, as an offset from UTC in hours.",
            parameters={
                "type": "object",
                "properties": {"utc_offset_hours": {"type": "number", "description": "e.g. 2 or -5.5; default 0"}},
            },
        ),
    )


def call_demo_tool(call: ToolCall) -> dict[str, Any]:
    """Run a tool call of the chat's demo tools; errors are reported to the model as results."""
    if call.name != "get_current_time" or call.namespace != "functions":
        return {"error": f"unknown tool {call.recipient!r}"}
    arguments = call.parsed_arguments if call.arguments_valid else {}
    if not isinstance(arguments, dict):
        return {"error": "arguments must be a JSON object"}
    try:
        offset = float(arguments.get("utc_offset_hours", 0) or 0)
        if not -24 < offset < 24:
            raise ValueError(offset)
    except (TypeError, ValueError):
        return {"error": f"utc_offset_hours must be a number of hours in (-24, 24), got {arguments.get('utc_offset_hours')!r}"}
    zone = datetime.timezone(datetime.timedelta(hours=offset))
    return {"time": datetime.datetime.now(zone).isoformat(timespec="seconds")}


def _invalid_utf8(text: str) -> str:
    """"" if ``text`` encodes as UTF-8, else where it does not ("byte 0xff at byte offset 3")."""
    try:
        text.encode("utf-8")
        return ""
    except UnicodeEncodeError as error:
        prefix = text[: error.start].encode("utf-8", "surrogateescape")
        char = text[error.start]
        if 0xDC80 <= ord(char) <= 0xDCFF:
            return f"byte 0x{ord(char) - 0xDC00:02x} at byte offset {len(prefix)}"
        return f"character {char!r} at byte offset {len(prefix)}"


class _Display:
    """Shows a chat answer: reasoning dimmed (or prefixed ``[reasoning]`` when not a terminal)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.kind: str | None = None

    def show(self, kind: str, text: str) -> None:
        if kind != self.kind:
            self.end_line()
            label = {"reasoning": "[reasoning] ", "answer": "assistant: ", "commentary": "[commentary] ",
                     "tool": "[tool] ", "raw": "[raw output] "}[kind]
            self.out.write(f"\x1b[2m{label}" if self.tty and kind == "reasoning" else label)
            self.kind = kind
        self.out.write(text)
        self.out.flush()

    def end_line(self) -> None:
        if self.kind is not None:
            self.out.write("\x1b[0m\n" if self.tty and self.kind == "reasoning" else "\n")
            self.out.flush()
        self.kind = None


def chat_turn(
    context: Context,
    conversation: Conversation,
    *,
    limit: int,
    temperature: float,
    seed: int,
    out: TextIO,
    err: TextIO,
    run_tool: Callable[[ToolCall], Any] = call_demo_tool,
) -> GenerationStats:
    """Answer the conversation's last user message, streaming to ``out``, and add the assistant's
    messages (and tool results) to ``conversation``.

    When the assistant calls a tool, ``run_tool`` runs it, its result is added as a tool message
    and the assistant continues (at most :data:`MAX_TOOL_ROUNDS` times). The context is reset to
    each new prompt, so the common prefix's KV cache is reused. An answer that does not follow the
    harmony format (the random demo model's) is shown raw and kept as plain assistant text.
    """
    from .harmony import (
        CALL_TOKEN,
        STOP_TOKENS,
        FinalDelta,
        HarmonyParseError,
        ParsedMessage,
        ReasoningDelta,
        StreamParser,
        TextDelta,
        ToolCall,
        render_prompt,
    )

    display = _Display(out)
    total = GenerationStats()
    for _ in range(MAX_TOOL_ROUNDS + 1):
        context.reset()
        prompt = render_prompt(conversation)
        parser: StreamParser | None = StreamParser(num_tokens=context.model.tokenizer.num_tokens)
        raw_text: list[str] = []
        calls: list[ToolCall] = []

        def on_token(token: int, text: str) -> None:
            nonlocal parser
            raw_text.append(text)
            if parser is None:
                display.show("raw", text)
                return
            try:
                events = parser.feed(token)
            except HarmonyParseError:
                parser = None
                display.show("raw", "".join(raw_text))
                return
            for event in events:
                if isinstance(event, ReasoningDelta):
                    display.show("reasoning", event.text)
                elif isinstance(event, FinalDelta):
                    display.show("answer", event.text)
                elif isinstance(event, TextDelta):
                    display.show("commentary", event.text)
                elif isinstance(event, ToolCall):
                    calls.append(event)
                    display.show("tool", f"calling {event.recipient}({event.arguments})")

        stats = GenerationStats()
        before = context.num_tokens
        context.append(prompt)
        stats.prompt_tokens = context.num_tokens - before
        start = time.perf_counter()
        context.process()
        stats.prefill_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for piece in context.generate(limit, temperature=temperature, seed=seed, stop_tokens=STOP_TOKENS):
            stats.generated_tokens += 1
            on_token(piece.token, piece.text)
        stats.decode_seconds = time.perf_counter() - start
        total.prompt_tokens += stats.prompt_tokens
        total.prefill_seconds += stats.prefill_seconds
        total.generated_tokens += stats.generated_tokens
        total.decode_seconds += stats.decode_seconds

        if parser is not None and parser.partial_message is None and parser.incomplete and not parser.messages:
            # Stopped inside the first message header (random tokens never reach <|message|>):
            # nothing was shown; show what came as raw text.
            parser = None
            display.show("raw", "".join(raw_text))
        if parser is None:
            conversation.add_assistant("".join(raw_text))
            break
        conversation.add_completion(parser.messages)
        partial = parser.partial_message
        if partial is not None and partial.recipient is None and partial.text:
            conversation.add_completion([ParsedMessage(role="assistant", text=partial.text, channel=partial.channel)])
        if not calls or parser.stop_token != CALL_TOKEN:
            break
        for call in calls:
            result = run_tool(call)
            display.show("tool", f"{call.recipient} returned {result}")
            conversation.add_tool_result(call.name, result, namespace=call.namespace or "functions")
    display.end_line()
    if parser is not None and parser.incomplete:
        print(f"[stopped after {limit} tokens]", file=err)
    return total


def run_chat(args: argparse.Namespace, stdin: TextIO | None = None, out: TextIO | None = None,
             err: TextIO | None = None) -> int:
    """Chat in the harmony format: one answer to ``args.prompt``, or an interactive session reading
    user messages from ``stdin`` (one per line; ``/quit`` or end of input ends it). Ctrl-C stops the
    current answer (the conversation goes on); Ctrl-C at the prompt ends the session."""
    from .context import Context
    from .harmony import Conversation, verify_tokenizer
    from .model import Model

    if stdin is None:
        stdin = sys.stdin
        if hasattr(stdin, "reconfigure"):
            stdin.reconfigure(errors="surrogateescape")  # bad bytes are reported per line, not fatal
    out = out or sys.stdout
    err = err or sys.stderr
    path = resolve_model(args.model, err)
    limit = _limit(args, "chat")
    with Model(path) as model, Context(model, context_length=args.context_length) as context:
        verify_tokenizer(model.tokenizer)
        conversation = Conversation(reasoning_effort=args.reasoning_effort, tools=demo_tools())
        interactive = args.prompt is None
        if interactive:
            print(f"Chat (reasoning effort {args.reasoning_effort}; tool: get_current_time). "
                  "One message per line; /quit or end of input to leave.", file=err)
        while True:
            if interactive:
                out.write("user> ")
                out.flush()
                line = stdin.readline()
                if not line:
                    out.write("\n")
                    break
                text = line.strip()
                bad = _invalid_utf8(text)
                if bad:
                    print(f"[ignored: the message is not valid UTF-8 ({bad})]", file=err)
                    continue
                if text in ("/quit", "/exit"):
                    break
                if not text:
                    continue
            else:
                text = args.prompt
            conversation.add_user(text)
            try:
                stats = chat_turn(context, conversation, limit=limit, temperature=args.temperature, seed=args.seed,
                                  out=out, err=err)
                print(f"[{stats.summary()}]", file=err)
            except KeyboardInterrupt:
                if not interactive:
                    raise
                out.write("\n")
                print("[interrupted]", file=err)
            if not interactive:
                break
    return 0
