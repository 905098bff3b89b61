"""``Session``: a conversation with a provider that keeps its history.

Each ``generate`` sends the whole history plus the new user turn, then appends both turns (the user's
text, its images and inlined text files, and the reply) to the history. On the MLX provider the next turn
reuses the prompt cache of the previous ones, so a long conversation is not recomputed turn after turn.
Streaming and async variants record the turn once the stream ends (also when it is cancelled or closed
early: the partial reply is what the model said). The four (sync or async, streamed or not) are thin shells
over one tool loop without I/O (``_Turn``). ``save`` / ``Session.load`` keep a session as JSON
(``abstractllm.session_io``); the 1.x tool methods (``add_tool``, ``generate_with_tools``, ...) come from
``abstractllm.session_compat``.

Three names, as AbstractLLM 1.x and AbstractCore spelled them::

    Session(system_prompt=None, provider=None, provider_config=None, metadata=None, tools=None)
    create_session(provider, **config)            # a Session with create_llm(provider, **config)
    BasicSession(provider=None, system_prompt=None, tools=None, temperature=None, seed=None)
"""

from __future__ import annotations

import os
from typing import Any, AsyncIterator, Iterator, Mapping, Sequence

from .enums import MessageRole
from .exceptions import AbstractLLMError, InvalidParameterError
from .messages import normalize_messages
from .params import PARAMS, normalize_keys
from .session_compat import (_IGNORED_1X_CALL_OPTIONS, _IGNORED_1X_OPTIONS, SessionToolsMixin, _deprecated,
                             _with_functions)
from .session_io import SESSION_FORMAT, _new_id, _now, load_session, save_session, session_to_dict
from .tool_runner import ToolResultEvent, ToolRunner, result_dict
from .tools import ToolDefinition, normalize_tools
from .types import Message, Response, ToolCall, aggregate_chunks

__all__ = ["Session", "BasicSession", "create_session", "create_enhanced_session", "SESSION_FORMAT"]


class Session(SessionToolsMixin):
    """A conversation with one provider. See the module docstring.

    Args:
        system_prompt: the system instruction, kept as the first message of the history.
        provider: a provider (``create_llm(...)``) or a provider name (created with ``provider_config``).
        provider_config: configuration for a provider given by name.
        metadata: free-form data saved with the session.
        tools: tools for every turn (needs a provider with the ``FUNCTION_CALLING`` capability); kept as
            ``ToolDefinition``s in ``session.tools``; the calls of Python functions run by default.
        max_tool_calls: the most tool rounds of one turn (1.x's name; default ``MAX_TOOL_ROUNDS``).
    """

    def __init__(self, system_prompt: str | None = None, provider: Any = None,
                 provider_config: Mapping[Any, Any] | None = None, metadata: dict[str, Any] | None = None,
                 tools: Sequence[Any] | None = None, max_tool_calls: int | None = None, **options: Any) -> None:
        unknown = set(options) - _IGNORED_1X_OPTIONS
        if unknown:
            raise InvalidParameterError(f"Unknown Session option(s): {', '.join(sorted(unknown))}.",
                                        param=sorted(unknown)[0])
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise InvalidParameterError("system_prompt must be a string.", param="system_prompt")
        self.id = _new_id()
        self.created_at = _now()
        self.last_updated = self.created_at
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.tools: list[ToolDefinition] = normalize_tools(tools) if tools else []
        self.max_tool_calls = max_tool_calls
        self.memory = None  # 1.x's hierarchical memory: not carried (docs/migration.md)
        self.messages: list[Message] = []
        self.system_prompt = system_prompt
        if system_prompt:
            self.add_message(MessageRole.SYSTEM, system_prompt)
        self._owns_provider = False
        self._provider: Any = None
        if provider is not None:
            self.set_provider(provider, provider_config)

    # ------------------------------------------------------------------ provider
    @property
    def provider(self) -> Any:
        return self._provider

    @provider.setter
    def provider(self, value: Any) -> None:
        self.set_provider(value)

    def set_provider(self, provider: Any, provider_config: Mapping[Any, Any] | None = None) -> None:
        """Use ``provider`` (an instance, or a name created with ``provider_config``) from the next turn."""
        if isinstance(provider, str):
            from .registry import create_llm

            self._provider, self._owns_provider = create_llm(provider, **dict(provider_config or {})), True
        else:
            self._provider, self._owns_provider = provider, False

    def _require_provider(self) -> Any:
        if self._provider is None:
            raise AbstractLLMError("This session has no provider: pass provider= (an instance or a name).")
        return self._provider

    def close(self) -> None:
        """Close the provider if the session created it (from a name); the history stays."""
        if self._owns_provider and self._provider is not None:
            self._provider.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ history
    def add_message(self, role: str | MessageRole, content: str, name: str | None = None,
                    tool_results: list[dict[str, Any]] | None = None, metadata: dict[str, Any] | None = None,
                    files: Sequence[Any] | None = None, tool_calls: Sequence[ToolCall] | None = None,
                    tool_call_id: str | None = None) -> Message:
        """Append a message to the history without generating (``files``: images and videos it holds;
        ``tool_calls``: the calls an assistant message made; ``tool_call_id``: the call a ``"tool"``
        message answers)."""
        role = str(getattr(role, "value", role))
        if role not in ("system", "user", "assistant", "tool"):
            raise InvalidParameterError(f"role must be system, user, assistant or tool, got {role!r}.", param="role")
        if (role == "tool") != (tool_call_id is not None):
            raise InvalidParameterError("a 'tool' message needs the tool_call_id it answers (and only a tool "
                                        "message has one).", param="tool_call_id")
        if not isinstance(content, str):
            raise InvalidParameterError("content must be a string.", param="content")
        meta = {"timestamp": _now(), **(metadata or {})}
        if tool_results:
            meta["tool_results"] = list(tool_results)
        msg = Message(role, content, name=name, metadata=meta, tool_calls=tool_calls, tool_call_id=tool_call_id)
        for item in files or []:
            from .media.kinds import is_video_input

            (msg.videos if is_video_input(item) else msg.images).append(item)
        self.messages.append(msg)
        self.last_updated = meta["timestamp"]
        return msg

    def get_history(self, include_system: bool = True) -> list[Message]:
        """The messages, in order (copies: changing them does not change the session)."""
        return [_copy(m) for m in self.messages if include_system or m.role != "system"]

    def get_messages(self) -> list[dict[str, Any]]:
        """The history as OpenAI-style chat messages (what the provider is sent)."""
        return [m.to_dict() for m in self.messages]

    def clear_history(self, keep_system_prompt: bool = True) -> None:
        """Forget the conversation (the system prompt stays unless ``keep_system_prompt=False``)."""
        self.messages = [m for m in self.messages if keep_system_prompt and m.role == "system"]
        self.last_updated = _now()

    # ------------------------------------------------------------------ generation
    def _turn(self, prompt: str | None, files: Any, system_prompt: str | None,
              provider: Any = None) -> tuple[Message | None, list[Message]]:
        """The user's message (text files inlined, media attached) and the messages to send. With no prompt
        and no files after a user (or tool) message already in the history (1.x's ``add_message`` then
        ``generate_with_tools()``), there is no new user message: the history is answered as it is."""
        provider = provider if provider is not None else self._require_provider()
        if prompt is None and not files and self.messages and self.messages[-1].role in ("user", "tool"):
            return None, self._outgoing(system_prompt)
        config = provider.get_config() if hasattr(provider, "get_config") else {}
        limit = int(config.get("max_text_file_bytes") or PARAMS["max_text_file_bytes"].validate(
            "max_text_file_bytes", PARAMS["max_text_file_bytes"].default))
        user = normalize_messages(prompt if prompt is not None else "", files=files, max_text_file_bytes=limit)[-1]
        user.metadata["timestamp"] = _now()
        return user, self._outgoing(system_prompt) + [user]

    def _outgoing(self, system_prompt: str | None) -> list[Message]:
        """The history to send (``system_prompt``: this call's system message instead of the session's)."""
        history = [_copy(m) for m in self.messages]
        if system_prompt is not None:
            history = [m for m in history if m.role != "system"]
            history.insert(0, Message("system", system_prompt))
        return history

    def _record(self, pending: list[Message], response: Response) -> None:
        """Append the turn's new messages (the user's, then tool results) and the reply."""
        self.messages.extend(pending)
        pending.clear()
        meta: dict[str, Any] = {"timestamp": _now()}
        if response.usage is not None:
            meta["usage"] = dict(response.usage)
        for key in ("thinking_signature", "thinking_blocks"):  # Anthropic's: its thinking goes back signed
            if key in response.metadata:
                meta[key] = response.metadata[key]
        self.messages.append(Message("assistant", response.content, metadata=meta,
                                     tool_calls=response.tool_calls or [], reasoning=response.reasoning))
        self.last_updated = meta["timestamp"]

    def _params(self, tools: Any, params: dict[str, Any]) -> dict[str, Any]:
        tools = tools if tools is not None else self.tools
        return {**params, "tools": tools} if tools else params

    def _prepare_call(self, tools: Any, params: dict[str, Any], execute_tools: bool | None,
                      max_tool_rounds: int | None, tool_functions: Mapping[str, Any] | None,
                      max_tool_calls: int | None, provider: Any) -> tuple[Any, dict[str, Any], ToolRunner]:
        """This call's provider, parameters and tool runner. Python functions among the tools run by default
        (``execute_tools=None``); 1.x's per-call options are taken out of ``params`` here."""
        for key in _IGNORED_1X_CALL_OPTIONS:
            params.pop(key, None)
        if provider is None:
            provider = self._require_provider()
        elif isinstance(provider, str):
            from .registry import create_llm

            provider = create_llm(provider)
        tools = _with_functions(tools if tools is not None else self.tools, tool_functions)
        params = self._params(tools, params)
        definitions = normalize_tools(params.get("tools"))
        if execute_tools is None:
            execute_tools = any(d.function is not None for d in definitions)
        rounds = max_tool_rounds if max_tool_rounds is not None else (
            max_tool_calls if max_tool_calls is not None else self.max_tool_calls)
        runner = ToolRunner(definitions or None, execute_tools, rounds,
                            context={"session_id": self.id, "provider": provider})
        return provider, params, runner

    def _ran(self, results: list[Message], executed: list[dict[str, Any]]) -> None:
        """Note the results of the round just run on the reply that made the calls (1.x ``tool_results``)."""
        found = [result_dict(m) for m in results]
        self.messages[-1].metadata["tool_results"] = found
        executed.extend(found)

    def generate(self, prompt: str | None = None, files: Any = None, stream: bool = False, *,
                 system_prompt: str | None = None, tools: Sequence[Any] | None = None,
                 execute_tools: bool | None = None, max_tool_rounds: int | None = None,
                 tool_functions: Mapping[str, Any] | None = None, max_tool_calls: int | None = None,
                 provider: Any = None, **params: Any) -> Response | Iterator[Response]:
        """Send ``prompt`` (with ``files``) after the history; append the turn; return the reply
        (``stream=True``: its chunks, the turn recorded when the stream ends).

        Tools that are Python functions run when the model calls them (``execute_tools=False``: the reply
        carries the calls and nothing runs; ``True``: run, and fail if there are no tools): each result goes
        back to the model, up to ``max_tool_rounds`` rounds (1.x: ``max_tool_calls``; default: the session's
        ``max_tool_calls``, else ``abstractllm.params.MAX_TOOL_ROUNDS``); see ``abstractllm.tool_runner``. The
        reply returned is the last one; every call and result is in the history (the assistant message that
        made calls lists them in ``tool_results``) and ``response.tools_executed`` lists what ran. Streaming,
        the chunks of every round are yielded in order, and a ``ToolResultEvent`` after each tool ran.

        1.x's per-call options: ``tool_functions`` (name -> function: run those), ``provider`` (this call
        only: an instance or a name), ``use_memory_context``, ``create_react_cycle``, ``adjust_system_prompt``
        and ``structured_config`` (accepted, ignored: this package has no memory or ReAct cycles)."""
        provider, params, runner = self._prepare_call(tools, params, execute_tools, max_tool_rounds,
                                                      tool_functions, max_tool_calls, provider)
        user, messages = self._turn(prompt, files, system_prompt, provider)
        turn = _Turn(self, user, messages, params, runner, system_prompt)
        if stream:
            return self._stream_turn(provider, turn)
        while True:
            response = provider.generate(**turn.request())
            if not turn.answered(response):
                return turn.result(response)
            turn.ran(runner.run(response.tool_calls or []))

    send = generate  # 1.x name

    def _stream_turn(self, provider: Any, turn: "_Turn") -> Iterator[Response]:
        while True:
            chunks: list[Response] = []
            stream = provider.generate(stream=True, **turn.request())
            try:
                for chunk in stream:
                    chunks.append(chunk)
                    yield chunk
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()  # stops the generation when the caller left early
                response = turn.streamed(chunks)
            if response is None or not turn.runs_tools(response):
                return
            yield from turn.ran(turn.runner.run(response.tool_calls or []))  # type: ignore[misc]

    async def generate_async(self, prompt: str | None = None, files: Any = None, stream: bool = False, *,
                             system_prompt: str | None = None, tools: Sequence[Any] | None = None,
                             execute_tools: bool | None = None, max_tool_rounds: int | None = None,
                             tool_functions: Mapping[str, Any] | None = None, max_tool_calls: int | None = None,
                             provider: Any = None, **params: Any) -> Response | AsyncIterator[Response]:
        """``generate``, awaited (``stream=True``: an async iterator; the turn is recorded at its end).
        Tools run as in ``generate``; coroutine functions are awaited, plain ones run in a thread."""
        import asyncio

        provider, params, runner = self._prepare_call(tools, params, execute_tools, max_tool_rounds,
                                                      tool_functions, max_tool_calls, provider)
        user, messages = await asyncio.to_thread(self._turn, prompt, files, system_prompt, provider)
        turn = _Turn(self, user, messages, params, runner, system_prompt)
        if stream:
            return self._astream_turn(provider, turn)
        while True:
            response = await provider.generate_async(**turn.request())
            if not turn.answered(response):
                return turn.result(response)
            turn.ran(await runner.arun(response.tool_calls or []))

    agenerate = generate_async
    send_async = generate_async

    async def _astream_turn(self, provider: Any, turn: "_Turn") -> AsyncIterator[Response]:
        while True:
            chunks: list[Response] = []
            agen = await provider.generate_async(stream=True, **turn.request())
            try:
                async for chunk in agen:
                    chunks.append(chunk)
                    yield chunk
            finally:
                await agen.aclose()
                response = turn.streamed(chunks)
            if response is None or not turn.runs_tools(response):
                return
            for event in turn.ran(await turn.runner.arun(response.tool_calls or [])):
                yield event  # type: ignore[misc]

    # ------------------------------------------------------------------ persistence (abstractllm.session_io)
    def to_dict(self) -> dict[str, Any]:
        """The session as JSON-serializable data (images as paths, URLs or data URIs; no API key)."""
        return session_to_dict(self)

    def save(self, filepath: str | os.PathLike) -> None:
        """Write the session to ``filepath`` as JSON (atomically: a temp file renamed into place)."""
        save_session(self, filepath)

    @classmethod
    def load(cls, filepath: str | os.PathLike, provider: Any = None,
             provider_config: Mapping[Any, Any] | None = None) -> "Session":
        """Read a session saved by ``save``. Its provider: ``provider`` if given (an instance or a name,
        with ``provider_config``), else the saved one recreated with ``create_llm`` (its API key, never
        saved, comes from ``provider_config`` or the provider's environment variable)."""
        return load_session(cls, filepath, provider, provider_config)


class BasicSession(Session):
    """AbstractCore's session: ``BasicSession(provider=None, system_prompt=None, tools=None,
    temperature=None, seed=None)``; session-wide ``temperature`` / ``seed`` apply to every turn unless a
    call overrides them. ``get_history()`` returns OpenAI-style dicts (``get_messages()`` likewise)."""

    def __init__(self, provider: Any = None, system_prompt: str | None = None, tools: Sequence[Any] | None = None,
                 temperature: float | None = None, seed: int | None = None, **options: Any) -> None:
        super().__init__(system_prompt=system_prompt, provider=provider, tools=tools, **options)
        self.temperature = temperature
        self.seed = None if seed is None or seed < 0 else seed

    def _params(self, tools: Any, params: dict[str, Any]) -> dict[str, Any]:
        params = dict(params)
        if self.temperature is not None:
            params.setdefault("temperature", self.temperature)
        if self.seed is not None:
            params.setdefault("seed", self.seed)
        return super()._params(tools, params)

    def get_history(self, include_system: bool = True) -> list[dict[str, Any]]:  # type: ignore[override]
        return [m.to_dict() for m in self.messages if include_system or m.role != "system"]


def create_session(provider: str | Any, **config: Any) -> Session:
    """A ``Session`` over ``create_llm(provider, **config)`` (or over a provider instance). The session keys
    ``system_prompt``, ``tools`` and ``metadata`` are taken out of ``config`` (plain names or
    ``ModelParameter`` members); the rest configures the provider."""
    config = normalize_keys(config)
    system_prompt = config.pop("system_prompt", None)
    tools = config.pop("tools", None)
    metadata = config.pop("metadata", None)
    options = {k: config.pop(k) for k in list(config) if k in _IGNORED_1X_OPTIONS or k == "max_tool_calls"}
    if not isinstance(provider, str) and config:
        raise InvalidParameterError("create_session(provider_instance, ...) takes no provider configuration.")
    return Session(system_prompt=system_prompt, provider=provider, provider_config=config, metadata=metadata,
                   tools=tools, **options)


def create_enhanced_session(provider: str | Any = None, **config: Any) -> Session:
    """1.x's ``create_enhanced_session``: ``create_session`` (deprecated; 1.x had merged it into ``Session``
    already; its memory and retry options are accepted and ignored)."""
    _deprecated("create_enhanced_session()", "create_session()")
    if provider is None:
        provider = config.pop("provider", None)
    return create_session(provider, **config)


# ---------------------------------------------------------------------------------------------- helpers
def _copy(m: Message) -> Message:
    return Message(m.role, text=m.text, images=m.images, videos=m.videos, name=m.name, metadata=m.metadata,
                   tool_calls=m.tool_calls, tool_call_id=m.tool_call_id, reasoning=m.reasoning)


class _Turn:
    """One turn's tool loop without its I/O, the core of the four shells (``generate`` and
    ``generate_async``, streamed or not), which only generate (sync or async) and run the tools
    (``ToolRunner.run`` / ``arun``): what the next round sends, each reply recorded in the history (a
    streamed one also when the stream is closed early: the partial reply is what was said), whether its
    tool calls run, their results recorded and sent back."""

    def __init__(self, session: Session, user: Message | None, messages: list[Message], params: dict[str, Any],
                 runner: ToolRunner, system_prompt: str | None) -> None:
        self.session = session
        self.pending = [user] if user is not None else []  # the messages the next reply follows
        self.messages = messages
        self.params = params
        self.runner = runner
        self.system_prompt = system_prompt
        self.executed: list[dict[str, Any]] = []

    def request(self) -> dict[str, Any]:
        """The next round's generation arguments."""
        return {"messages": self.messages, **self.params}

    def record(self, response: Response) -> None:
        self.session._record(self.pending, response)

    def runs_tools(self, response: Response) -> bool:
        """Whether the reply's tool calls run (and another round follows)."""
        return self.runner.should_run(response)

    def answered(self, response: Response) -> bool:
        """A whole reply recorded; whether its tool calls run."""
        self.record(response)
        return self.runs_tools(response)

    def streamed(self, chunks: list[Response]) -> Response | None:
        """A streamed reply (``None`` when no chunk came), recorded."""
        if not chunks:
            return None
        response = aggregate_chunks(chunks)
        self.record(response)
        return response

    def ran(self, results: list[Message]) -> list[ToolResultEvent]:
        """A round's tool results recorded (on the reply that made the calls) and sent by the next round;
        returned as the events a streamed turn yields."""
        self.session._ran(results, self.executed)
        self.pending = results
        self.messages = self.session._outgoing(self.system_prompt) + results
        self.params = self.runner.next_params(self.params)
        return [ToolResultEvent(result_dict(m)) for m in results]

    def result(self, response: Response) -> Response:
        """The turn's last reply, with ``tools_executed`` when tools ran."""
        if self.executed:
            response.tools_executed = self.executed
        return response
