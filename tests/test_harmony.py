"""Harmony chat format: prompt rendering, stop tokens, streaming parser, vocabulary check — all offline.

Expected tokens come from openai-harmony's own renderer (the format's reference), never from
gpt_oss_metal.harmony itself.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import openai_harmony as oh
import pytest

from gpt_oss_metal import harmony as H
from gpt_oss_metal.errors import InvalidArgumentError, InvalidStateError, UnsupportedArgumentError

# Any network access fails: proxies point at the discard port of the loopback interface.
NO_NETWORK_ENV = {
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "HF_HUB_OFFLINE": "1",
}

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "City name"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["location"],
}
A = oh.Role.ASSISTANT


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in NO_NETWORK_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def enc() -> oh.HarmonyEncoding:
    # Loaded under the no-network environment (the cache is cleared so the load really happens here).
    saved = {name: os.environ.get(name) for name in NO_NETWORK_ENV}
    os.environ.update(NO_NETWORK_ENV)
    try:
        H.load_encoding.cache_clear()
        return H.load_encoding()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def assistant_tokens(enc: oh.HarmonyEncoding, messages: list[oh.Message], last_end: int | None = None) -> list[int]:
    """What a model emits after the prompt's ``<|start|>assistant``: harmony's rendering of its messages."""
    tokens: list[int] = []
    for message in messages:
        tokens += enc.render(message)
    assert tokens[:2] == [200006] + enc.encode("assistant")
    tokens = tokens[2:]
    if last_end is not None:
        assert tokens[-1] in (H.END_TOKEN, H.CALL_TOKEN)
        tokens[-1] = last_end
    return tokens


def text(tokens: list[int], enc: oh.HarmonyEncoding) -> str:
    return enc.decode(tokens)


# --------------------------------------------------------------------------------------------
# Loading offline
# --------------------------------------------------------------------------------------------


def test_load_encoding_sets_the_variable_only_while_loading(monkeypatch: pytest.MonkeyPatch, enc) -> None:
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", "/nonexistent-user-setting")
    H.load_encoding.cache_clear()
    try:
        loaded = H.load_encoding()  # succeeds although the user's directory does not exist
    finally:
        H.load_encoding.cache_clear()
    assert os.environ["TIKTOKEN_ENCODINGS_BASE"] == "/nonexistent-user-setting"
    assert loaded.name == "HarmonyGptOss"
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE")
    H.load_encoding()
    assert "TIKTOKEN_ENCODINGS_BASE" not in os.environ


def test_fresh_process_with_empty_cache_needs_no_network(tmp_path: Path) -> None:
    """A new user (empty cache, no vocabulary anywhere) renders and parses with every network path broken."""
    script = textwrap.dedent(
        """
        import os
        from gpt_oss_metal import harmony as H
        conv = H.Conversation(reasoning_effort="low").add_user("Hi")
        tokens = H.render_prompt(conv)
        assert tokens[-2] == 200006, tokens[-3:]
        done = H.parse_completion(H.load_encoding().encode("<|channel|>final<|message|>Hello<|return|>", allowed_special="all"))
        assert done.final == "Hello", done
        assert "TIKTOKEN_ENCODINGS_BASE" not in os.environ
        assert os.path.exists(os.path.join(os.environ["XDG_CACHE_HOME"], "gpt-oss-metal", "encodings", "o200k_base.tiktoken"))
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOKEN")}
    env.update(NO_NETWORK_ENV, XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def harmony_reference_conversation(effort: oh.ReasoningEffort, with_tools: bool) -> oh.Conversation:
    system = oh.SystemContent.new().with_reasoning_effort(effort)
    messages = [oh.Message.from_role_and_content(oh.Role.SYSTEM, system)]
    developer = oh.DeveloperContent.new().with_instructions("Answer briefly.")
    if with_tools:
        developer = developer.with_function_tools(
            [
                oh.ToolDescription.new("get_weather", "Current weather of a city", WEATHER_SCHEMA),
                oh.ToolDescription.new("now", "The current time"),
            ]
        )
    messages.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER, developer))
    messages.append(oh.Message.from_role_and_content(oh.Role.USER, "What's the weather in Paris?"))
    return oh.Conversation.from_messages(messages)


def our_conversation(effort: str, with_tools: bool) -> H.Conversation:
    tools = (
        [H.FunctionTool("get_weather", "Current weather of a city", WEATHER_SCHEMA), H.FunctionTool("now", "The current time")]
        if with_tools
        else []
    )
    return H.Conversation(reasoning_effort=effort, instructions="Answer briefly.", tools=tools).add_user(
        "What's the weather in Paris?"
    )


@pytest.mark.parametrize("with_tools", [False, True])
@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_render_matches_openai_harmony(enc, effort: str, with_tools: bool) -> None:
    ours = H.render_prompt(our_conversation(effort, with_tools))
    reference = enc.render_conversation_for_completion(
        harmony_reference_conversation(oh.ReasoningEffort(effort.capitalize()), with_tools), A
    )
    assert ours == reference
    rendered = text(ours, enc)
    assert f"Reasoning: {effort}" in rendered
    # system, developer, user, then the open assistant header
    assert ours.count(200006) == 4 and ours.count(200007) == 3 and ours.count(200008) == 3
    assert ours[:2] == [200006] + enc.encode("system")
    assert ours[-2:] == [200006] + enc.encode("assistant")


def test_tools_appear_where_harmony_puts_them(enc) -> None:
    rendered = text(H.render_prompt(our_conversation("medium", True)), enc)
    system, developer = rendered.split("<|end|>")[:2]
    assert "Calls to these tools must go to the commentary channel: 'functions'." in system
    assert developer.startswith("<|start|>developer<|message|># Instructions\n\nAnswer briefly.")
    assert "namespace functions {" in developer
    assert "// Current weather of a city\ntype get_weather = (_: {" in developer
    assert "location: string" in developer and 'unit?: "c" | "f"' in developer
    assert "type now = () => any;" in developer
    no_tools = text(H.render_prompt(our_conversation("medium", False)), enc)
    assert "namespace functions" not in no_tools and "commentary channel" not in no_tools


def test_no_developer_message_without_instructions_or_tools(enc) -> None:
    tokens = H.render_prompt(H.Conversation().add_user("Hi"))
    reference = enc.render_conversation_for_completion(
        oh.Conversation.from_messages(
            [
                oh.Message.from_role_and_content(oh.Role.SYSTEM, oh.SystemContent.new()),
                oh.Message.from_role_and_content(oh.Role.USER, "Hi"),
            ]
        ),
        A,
    )
    assert tokens == reference
    assert "developer" not in text(tokens, enc)


def test_multi_turn_with_tool_call_and_result_matches_harmony(enc) -> None:
    conv = our_conversation("high", True)
    conv.conversation_start_date = "2025-08-05"
    call_tokens = assistant_tokens(
        enc,
        [
            oh.Message.from_role_and_content(A, "Need the weather tool.").with_channel("analysis"),
            oh.Message.from_role_and_content(A, '{"location": "Paris"}')
            .with_channel("commentary")
            .with_recipient("functions.get_weather")
            .with_content_type("<|constrain|>json"),
        ],
        last_end=H.CALL_TOKEN,
    )
    conv.add_completion(H.parse_completion(call_tokens))
    conv.add_tool_result("get_weather", {"temperature": 21})
    ours = H.render_prompt(conv)

    system = oh.SystemContent.new().with_reasoning_effort(oh.ReasoningEffort.HIGH).with_conversation_start_date("2025-08-05")
    reference_conv = harmony_reference_conversation(oh.ReasoningEffort.HIGH, True)
    reference_conv.messages[0] = oh.Message.from_role_and_content(oh.Role.SYSTEM, system)
    reference_conv.messages += [
        oh.Message.from_role_and_content(A, "Need the weather tool.").with_channel("analysis"),
        oh.Message.from_role_and_content(A, '{"location": "Paris"}')
        .with_channel("commentary")
        .with_recipient("functions.get_weather")
        .with_content_type("<|constrain|>json"),
        oh.Message.from_author_and_content(oh.Author.new(oh.Role.TOOL, "functions.get_weather"), '{"temperature": 21}')
        .with_channel("commentary")
        .with_recipient("assistant"),
    ]
    assert ours == enc.render_conversation_for_completion(reference_conv, A)
    rendered = text(ours, enc)
    assert "Current date: 2025-08-05" in rendered
    assert '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temperature": 21}<|end|>' in rendered
    # Reasoning of the unfinished turn stays (harmony drops it only after a final answer).
    assert "Need the weather tool." in rendered


def test_stop_tokens_are_harmonys(enc) -> None:
    assert set(H.STOP_TOKENS) == set(enc.stop_tokens_for_assistant_actions()) == {200002, 200012}
    assert set(enc.stop_tokens()) == set(H.STOP_TOKENS) | {H.END_TOKEN}
    for name, token_id in H.HARMONY_SPECIAL_TOKENS.items():
        assert enc.encode(name, allowed_special={name}) == [token_id]


@pytest.mark.parametrize(
    "make",
    [
        lambda: H.Conversation(reasoning_effort="extreme"),
        lambda: H.Conversation(tools=[H.FunctionTool("a"), H.FunctionTool("a")]),
        lambda: H.Conversation(tools=["get_weather"]),  # type: ignore[list-item]
        lambda: H.FunctionTool("two words"),
        lambda: H.FunctionTool(""),
        lambda: H.FunctionTool("f", parameters={"x": object()}),
        lambda: H.Conversation().add_user(3),  # type: ignore[arg-type]
        lambda: H.render_prompt("hello"),  # type: ignore[arg-type]
    ],
)
def test_bad_conversation_arguments_raise_clear_errors(make) -> None:
    with pytest.raises(InvalidArgumentError):
        make()


# --------------------------------------------------------------------------------------------
# Streaming parser
# --------------------------------------------------------------------------------------------

ANALYSIS = "The user wants the weather. I should call get_weather."
PREAMBLE = "Checking the weather for you."
ARGUMENTS = '{"location": "Paris", "unit": "c"}'
FINAL = "It is 21 °C and sunny in Paris."


def tool_call_turn(enc) -> list[int]:
    return assistant_tokens(
        enc,
        [
            oh.Message.from_role_and_content(A, ANALYSIS).with_channel("analysis"),
            oh.Message.from_role_and_content(A, PREAMBLE).with_channel("commentary"),
            oh.Message.from_role_and_content(A, ARGUMENTS)
            .with_channel("commentary")
            .with_recipient("functions.get_weather")
            .with_content_type("<|constrain|>json"),
        ],
        last_end=H.CALL_TOKEN,
    )


def answer_turn(enc) -> list[int]:
    return assistant_tokens(
        enc,
        [
            oh.Message.from_role_and_content(A, ANALYSIS).with_channel("analysis"),
            oh.Message.from_role_and_content(A, FINAL).with_channel("final"),
        ],
        last_end=H.RETURN_TOKEN,
    )


def expected_tool_call_events() -> list[H.Event]:
    analysis = H.ParsedMessage("assistant", ANALYSIS, channel="analysis")
    preamble = H.ParsedMessage("assistant", PREAMBLE, channel="commentary")
    call = H.ParsedMessage(
        "assistant", ARGUMENTS, channel="commentary", recipient="functions.get_weather", content_type="<|constrain|>json"
    )
    return [
        H.ReasoningDelta(ANALYSIS, "analysis"),
        H.MessageEnd(analysis, H.END_TOKEN),
        H.CommentaryDelta(PREAMBLE, "commentary"),
        H.MessageEnd(preamble, H.END_TOKEN),
        H.ToolCall(
            recipient="functions.get_weather",
            arguments=ARGUMENTS,
            channel="commentary",
            content_type="<|constrain|>json",
            parsed_arguments={"location": "Paris", "unit": "c"},
            arguments_valid=True,
        ),
        H.MessageEnd(call, H.CALL_TOKEN),
    ]


def test_tool_call_turn_events_one_token_at_a_time(enc) -> None:
    tokens = tool_call_turn(enc)
    assert tokens.count(H.END_TOKEN) == 2 and tokens[-1] == H.CALL_TOKEN
    parser = H.StreamParser()
    events: list[H.Event] = []
    for token in tokens:
        events += parser.feed(token)
    assert H.coalesce(events) == expected_tool_call_events()
    # Deltas arrive as the tokens do, not all at the end of the message.
    assert sum(isinstance(e, H.ReasoningDelta) for e in events) > 5
    assert all(e.text for e in events if isinstance(e, H.TextDelta))
    # Arguments of a tool call are never shown as text deltas.
    assert not any(isinstance(e, H.TextDelta) and "Paris" in e.text for e in events)
    assert not parser.incomplete and parser.stop_token == H.CALL_TOKEN
    call = next(e for e in events if isinstance(e, H.ToolCall))
    assert (call.namespace, call.name) == ("functions", "get_weather")


def test_feeding_in_any_chunks_gives_the_same_events(enc) -> None:
    tokens = tool_call_turn(enc) + [200006] + enc.encode("assistant") + answer_turn(enc)
    one_by_one = H.StreamParser()
    reference = [event for token in tokens for event in one_by_one.feed(token)]
    assert H.StreamParser().feed_many(tokens) == reference
    rng = random.Random(0)
    for _ in range(5):
        parser, events, start = H.StreamParser(), [], 0
        while start < len(tokens):
            stop = start + rng.randint(1, 9)
            events += parser.feed_many(tokens[start:stop])
            start = stop
        assert events == reference


def test_answer_turn_and_parse_completion(enc) -> None:
    tokens = answer_turn(enc)
    events = H.StreamParser().feed_many(tokens)
    assert H.coalesce(events) == [
        H.ReasoningDelta(ANALYSIS, "analysis"),
        H.MessageEnd(H.ParsedMessage("assistant", ANALYSIS, channel="analysis"), H.END_TOKEN),
        H.FinalDelta(FINAL, "final"),
        H.MessageEnd(H.ParsedMessage("assistant", FINAL, channel="final"), H.RETURN_TOKEN),
    ]
    done = H.parse_completion(tokens)
    assert (done.reasoning, done.final, done.tool_calls) == (ANALYSIS, FINAL, [])
    assert done.stop_token == H.RETURN_TOKEN and not done.incomplete
    # The same messages as openai-harmony's own one-shot parser.
    reference = enc.parse_messages_from_completion_tokens(tokens, A)
    assert [H.ParsedMessage.from_harmony(m) for m in reference] == done.messages

    call = H.parse_completion(tool_call_turn(enc))
    assert [c.parsed_arguments for c in call.tool_calls] == [{"location": "Paris", "unit": "c"}]
    assert call.final == "" and call.reasoning == ANALYSIS


def test_model_style_header_with_recipient_after_channel(enc) -> None:
    """The model writes ``<|channel|>commentary to=functions.f <|constrain|>json``; harmony renders the other order."""
    tokens = enc.encode(
        '<|channel|>commentary to=functions.now <|constrain|>json<|message|>{}<|call|>', allowed_special="all"
    )
    (call, end) = H.StreamParser().feed_many(tokens)
    assert isinstance(call, H.ToolCall) and call.recipient == "functions.now" and call.parsed_arguments == {}
    assert isinstance(end, H.MessageEnd) and end.end_token == H.CALL_TOKEN


def test_invalid_tool_arguments_are_reported_not_raised(enc) -> None:
    tokens = enc.encode('<|channel|>commentary to=functions.now<|message|>{"x": <|call|>', allowed_special="all")
    (call,) = H.parse_completion(tokens).tool_calls
    assert call.arguments == '{"x": ' and not call.arguments_valid and call.parsed_arguments is None


def test_utf8_characters_split_across_tokens(enc) -> None:
    answer = "Glyphs: 𓀀 ꙮ 𒀱 龘 — done"
    body = enc.encode(answer)
    # Guard: the encoding really splits some of these characters over several tokens.
    pieces = [bytes(enc._inner.decode_bytes([t])) for t in body]
    assert sum(1 for p in pieces if not _valid_utf8(p)) >= 4
    tokens = enc.encode("<|channel|>final<|message|>", allowed_special="all") + body + [H.RETURN_TOKEN]
    events = H.StreamParser().feed_many(tokens)
    deltas = [e.text for e in events if isinstance(e, H.FinalDelta)]
    assert "".join(deltas) == answer
    assert all("\ufffd" not in d for d in deltas)
    assert H.parse_completion(tokens).final == answer


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_invalid_utf8_becomes_replacement_characters_consistently(enc) -> None:
    lone_lead_byte = enc.encode("𓀀")[0]  # b"\xf0": the first byte of a 4-byte character, alone
    tokens = enc.encode("<|channel|>final<|message|>ab", allowed_special="all") + [lone_lead_byte]
    tokens += enc.encode("c") + [lone_lead_byte, H.END_TOKEN]
    events = H.StreamParser().feed_many(tokens)
    end = events[-1]
    assert isinstance(end, H.MessageEnd)
    assert end.message.text == "ab\ufffdc\ufffd"
    assert "".join(e.text for e in events if isinstance(e, H.FinalDelta)) == end.message.text


def test_stream_cut_mid_message_is_incomplete_not_an_error(enc) -> None:
    tokens = answer_turn(enc)
    cut = tokens.index(200008, tokens.index(H.END_TOKEN)) + 3  # three tokens into the final answer
    parser = H.StreamParser()
    events = parser.feed_many(tokens[:cut])
    assert parser.incomplete
    partial = parser.partial_message
    assert partial is not None and partial.channel == "final" and FINAL.startswith(partial.text) and partial.text
    done = parser.completion()
    assert done.incomplete and done.messages[0].text == ANALYSIS and done.partial_message == partial
    assert "".join(e.text for e in events if isinstance(e, H.FinalDelta)) == partial.text

    in_header = H.StreamParser()
    assert in_header.feed_many(enc.encode("<|channel|>fin", allowed_special="all")) == []
    assert in_header.incomplete and in_header.partial_message is None
    # The prompt opened the assistant's header, so no tokens at all is an unfinished message too.
    assert H.parse_completion([]).incomplete is True
    assert H.parse_completion([], role=None).incomplete is False


def test_malformed_sequence_raises_a_clear_error_and_fails_the_parser(enc) -> None:
    tokens = enc.encode("<|channel|>final<|message|>Hi<|end|>oops", allowed_special="all")
    parser = H.StreamParser()
    with pytest.raises(H.HarmonyParseError, match=r"position 5: .*expecting start token 200006"):
        parser.feed_many(tokens)
    with pytest.raises(InvalidStateError, match="previous token was rejected"):
        parser.feed(200006)
    with pytest.raises(H.HarmonyParseError):
        H.parse_completion(enc.encode("<|channel|>final<|message|>Hi<|end|><|message|>", allowed_special="all"))


@pytest.mark.parametrize("bad", [-1, H.HARMONY_NUM_TOKENS, 10**12, "5", 1.0, None, True])
def test_bad_token_values_raise_invalid_argument(bad) -> None:
    parser = H.StreamParser()
    with pytest.raises(InvalidArgumentError):
        parser.feed(bad)
    # The parser is still usable after a rejected argument.
    assert parser.feed_many([200005]) == [] and parser.incomplete


def test_model_vocabulary_size_bounds_ids() -> None:
    parser = H.StreamParser(num_tokens=200014)
    with pytest.raises(InvalidArgumentError, match="200014"):
        parser.feed(200014)


def test_numpy_integers_are_accepted(enc) -> None:
    np = pytest.importorskip("numpy")
    tokens = np.array(enc.encode("<|channel|>final<|message|>Hi<|return|>", allowed_special="all"), dtype=np.uint32)
    assert H.coalesce(H.StreamParser().feed_many(tokens))[0] == H.FinalDelta("Hi", "final")


# --------------------------------------------------------------------------------------------
# Model vocabulary check
# --------------------------------------------------------------------------------------------


def test_verify_tokenizer_accepts_a_model_with_harmonys_vocabulary(tiny_model_bin: Path) -> None:
    from gpt_oss_metal import Model

    H.verify_tokenizer(Model(str(tiny_model_bin)).tokenizer)


def test_verify_tokenizer_rejects_swapped_special_tokens(tiny_model_bin: Path, tmp_path: Path) -> None:
    """A real model file whose <|start|> and <|end|> UUIDs are swapped: valid, but not harmony's ids."""
    from gpt_oss_metal import Model, model_bin

    path = tmp_path / "swapped.bin"
    shutil.copyfile(tiny_model_bin, path)
    start_slot = 200006 - model_bin.NUM_TEXT_TOKENS
    with open(path, "r+b") as f:
        f.seek(model_bin.SPECIAL_UUIDS_OFFSET + 16 * start_slot)
        start_end = f.read(32)
        f.seek(model_bin.SPECIAL_UUIDS_OFFSET + 16 * start_slot)
        f.write(start_end[16:] + start_end[:16])
    tokenizer = Model(str(path)).tokenizer
    assert tokenizer.encode_special_token("<|start|>") == 200007  # the swap took effect
    with pytest.raises(H.HarmonyVocabularyError, match=r"<\|start\|> id 200007; harmony uses 200006"):
        H.verify_tokenizer(tokenizer)
    assert issubclass(H.HarmonyVocabularyError, UnsupportedArgumentError)


class _StubTokenizer:
    def __init__(self, specials: dict[str, int], tokens: tuple[bytes, ...]) -> None:
        self.specials, self.tokens = specials, tokens
        self.num_text_tokens = len(tokens)

    def encode_special_token(self, name: str) -> int:
        if name not in self.specials:
            raise UnsupportedArgumentError(f"no {name}")
        return self.specials[name]

    def decode(self, token: int) -> bytes:
        return self.tokens[token]


def test_verify_tokenizer_rejects_other_vocabularies() -> None:
    from gpt_oss_metal.vocab import token_bytes_by_rank

    good = token_bytes_by_rank()
    H.verify_tokenizer(_StubTokenizer(dict(H.HARMONY_SPECIAL_TOKENS), good))  # control: passes
    missing = {k: v for k, v in H.HARMONY_SPECIAL_TOKENS.items() if k != "<|call|>"}
    with pytest.raises(H.HarmonyVocabularyError, match=r"lacks harmony token <\|call\|>"):
        H.verify_tokenizer(_StubTokenizer(missing, good))
    with pytest.raises(H.HarmonyVocabularyError, match="199997 text tokens"):
        H.verify_tokenizer(_StubTokenizer(dict(H.HARMONY_SPECIAL_TOKENS), good[:-1]))
    changed = good[:1000] + (b"\x00changed",) + good[1001:]
    with pytest.raises(H.HarmonyVocabularyError, match="text token 1000"):
        H.verify_tokenizer(_StubTokenizer(dict(H.HARMONY_SPECIAL_TOKENS), changed))
