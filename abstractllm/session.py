"""``Session``: a conversation with a provider that keeps its history.

Each ``generate`` sends the whole history plus the new user turn, then appends both turns (the user's
text, its images and inlined text files, and the reply) to the history. On the MLX provider the next turn
reuses the prompt cache of the previous ones, so a long conversation is not recomputed turn after turn.
Streaming and async variants record the turn once the stream ends (also when it is cancelled or closed
early: the partial reply is what the model said). ``save`` / ``Session.load`` keep a session as JSON.

Three names, as AbstractLLM 1.x and AbstractCore spelled them::

    Session(system_prompt=None, provider=None, provider_config=None, metadata=None, tools=None)
    create_session(provider, **config)            # a Session with create_llm(provider, **config)
    BasicSession(provider=None, system_prompt=None, tools=None, temperature=None, seed=None)
"""

from __future__ import annotations

import base64
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Mapping, Sequence

from .enums import MessageRole
from .exceptions import AbstractLLMError, FileProcessingError, InvalidParameterError
from .messages import normalize_messages
from .params import PARAMS, normalize_keys
from .tool_runner import ToolResultEvent, ToolRunner, result_dict
from .tools import ToolDefinition, function_to_tool_definition, normalize_tools
from .types import Message, Response, ToolCall

__all__ = ["Session", "BasicSession", "create_session", "create_enhanced_session", "SESSION_FORMAT"]

#: the "format" field of a saved session
SESSION_FORMAT = "abstractllm.session/1"
#: 1.x Session options that have no meaning here (hierarchical memory, retries, ...): accepted, ignored
_IGNORED_1X_OPTIONS = frozenset({
    "enable_memory", "memory_config", "enable_retry", "retry_config", "persist_memory", "memory_facts_max",
    "memory_facts_min_confidence", "memory_facts_min_occurrences",
})
#: 1.x per-call Session.generate options with no meaning here (memory, ReAct cycles): accepted, ignored
_IGNORED_1X_CALL_OPTIONS = frozenset({"use_memory_context", "create_react_cycle", "adjust_system_prompt",
                                      "structured_config"})
#: config keys never written to a saved session
_SECRET_KEYS = frozenset({"api_key"})


def _new_id() -> str:
    import uuid  # here: importing abstractllm stays light

    return str(uuid.uuid4())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Session:
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
        if stream:
            return self._stream_turn(provider, user, messages, params, runner, system_prompt)
        pending = [user] if user is not None else []
        executed: list[dict[str, Any]] = []
        while True:
            response = provider.generate(messages=messages, **params)
            self._record(pending, response)
            if not runner.should_run(response):
                break
            pending = runner.run(response.tool_calls or [])
            self._ran(pending, executed)
            messages, params = self._outgoing(system_prompt) + pending, runner.next_params(params)
        if executed:
            response.tools_executed = executed
        return response

    send = generate  # 1.x name

    def _stream_turn(self, provider: Any, user: Message | None, messages: list[Message], params: dict[str, Any],
                     runner: ToolRunner, system_prompt: str | None) -> Iterator[Response]:
        pending = [user] if user is not None else []
        while True:
            chunks: list[Response] = []
            stream = provider.generate(messages=messages, stream=True, **params)
            try:
                for chunk in stream:
                    chunks.append(chunk)
                    yield chunk
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()  # stops the generation when the caller left early
                if chunks:  # also when the stream is closed early: the partial reply is what was said
                    response = _joined(chunks)
                    self._record(pending, response)
            if not chunks or not runner.should_run(response):
                return
            pending = runner.run(response.tool_calls or [])
            self._ran(pending, [])
            for message in pending:
                yield ToolResultEvent(result_dict(message))  # type: ignore[misc]
            messages, params = self._outgoing(system_prompt) + pending, runner.next_params(params)

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
        if stream:
            return self._astream_turn(provider, user, messages, params, runner, system_prompt)
        pending = [user] if user is not None else []
        executed: list[dict[str, Any]] = []
        while True:
            response = await provider.generate_async(messages=messages, **params)
            self._record(pending, response)
            if not runner.should_run(response):
                break
            pending = await runner.arun(response.tool_calls or [])
            self._ran(pending, executed)
            messages, params = self._outgoing(system_prompt) + pending, runner.next_params(params)
        if executed:
            response.tools_executed = executed
        return response

    agenerate = generate_async
    send_async = generate_async

    async def _astream_turn(self, provider: Any, user: Message | None, messages: list[Message],
                            params: dict[str, Any], runner: ToolRunner,
                            system_prompt: str | None) -> AsyncIterator[Response]:
        pending = [user] if user is not None else []
        while True:
            chunks: list[Response] = []
            agen = await provider.generate_async(messages=messages, stream=True, **params)
            try:
                async for chunk in agen:
                    chunks.append(chunk)
                    yield chunk
            finally:
                await agen.aclose()
                if chunks:
                    response = _joined(chunks)
                    self._record(pending, response)
            if not chunks or not runner.should_run(response):
                return
            pending = await runner.arun(response.tool_calls or [])
            self._ran(pending, [])
            for message in pending:
                yield ToolResultEvent(result_dict(message))  # type: ignore[misc]
            messages, params = self._outgoing(system_prompt) + pending, runner.next_params(params)

    # ------------------------------------------------------------------ 1.x tool API
    def add_tool(self, tool: Any) -> ToolDefinition:
        """Add a tool for every later turn (a function, an OpenAI / 1.x dict, or a ``ToolDefinition``);
        returns its definition (``session.tools`` holds definitions)."""
        definition = normalize_tools([*self.tools, tool])[-1]
        self.tools.append(definition)
        return definition

    def generate_with_tools(self, tool_functions: Mapping[str, Any] | None = None,
                            tools: Sequence[Any] | None = None, prompt: str | None = None, provider: Any = None,
                            max_tool_calls: int | None = None, system_prompt: str | None = None,
                            files: Any = None, **params: Any) -> Response:
        """1.x: ``generate`` with its tools run (deprecated: ``generate`` runs them already)."""
        _deprecated("Session.generate_with_tools()", "Session.generate() (it runs Python tools by default)")
        params.pop("adjust_system_prompt", None)
        return self.generate(prompt, files, system_prompt=system_prompt, tools=tools, tool_functions=tool_functions,
                             max_tool_calls=max_tool_calls, provider=provider, **params)  # type: ignore[return-value]

    def generate_with_tools_streaming(self, tool_functions: Mapping[str, Any] | None = None,
                                      tools: Sequence[Any] | None = None, prompt: str | None = None,
                                      provider: Any = None, max_tool_calls: int | None = None,
                                      system_prompt: str | None = None, files: Any = None,
                                      **params: Any) -> Iterator[Any]:
        """1.x: the streamed turn as text pieces (``str``) and ``{"type": "tool_result", "tool_call": {...}}``
        dicts (deprecated: ``generate(..., stream=True)`` yields the same events between its chunks)."""
        _deprecated("Session.generate_with_tools_streaming()", "Session.generate(..., stream=True)")
        params.pop("adjust_system_prompt", None)
        stream = self.generate(prompt, files, True, system_prompt=system_prompt, tools=tools,
                               tool_functions=tool_functions, max_tool_calls=max_tool_calls, provider=provider,
                               **params)
        for chunk in stream:  # type: ignore[union-attr]
            if isinstance(chunk, ToolResultEvent):
                yield dict(chunk)
            elif chunk.content:
                yield chunk.content

    def execute_tool_call(self, tool_call: ToolCall, tool_functions: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """1.x: run one call with ``tool_functions`` (else the session's tools); its result as a dict
        ``{"call_id", "name", "arguments", "output", "error"}`` (an exception is reported in ``error``)."""
        if isinstance(tool_call, dict):  # 1.x's event dict: {"name", "arguments", "id" or "call_id"}
            tool_call = ToolCall(str(tool_call.get("id") or tool_call.get("call_id") or f"call_{_new_id()[:8]}"),
                                 str(tool_call.get("name")), dict(tool_call.get("arguments") or {}))
        tools = _with_functions(list(self.tools), tool_functions)
        definitions = normalize_tools(tools)
        if not definitions:
            return {"call_id": tool_call.id, "name": tool_call.name, "arguments": tool_call.arguments,
                    "output": None, "result": None, "error": f"there is no tool named {tool_call.name!r}"}
        runner = ToolRunner(definitions, True, context={"session_id": self.id, "provider": self._provider})
        return result_dict(runner.run([tool_call])[0])

    def execute_tool_calls(self, response: Response, tool_functions: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """1.x: ``execute_tool_call`` for every call of ``response``."""
        if not response.has_tool_calls():
            raise InvalidParameterError("The response has no tool calls.", param="response")
        return [self.execute_tool_call(c, tool_functions) for c in response.tool_calls or []]

    def add_tool_result(self, tool_call_id: str, result: Any, error: str | None = None,
                        tool_name: str | None = None, arguments: dict[str, Any] | None = None) -> Message:
        """1.x: record a tool's result, run by the application, for a call of the last assistant message: a
        ``"tool"`` message answering ``tool_call_id`` (what the model sees next) and an entry of that
        assistant message's ``tool_results``."""
        assistant = next((m for m in reversed(self.messages) if m.role == "assistant"), None)
        if assistant is None:
            raise InvalidParameterError("No assistant message to attach a tool result to.", param="tool_call_id")
        if tool_name is None:
            tool_name = next((c.name for c in assistant.tool_calls if c.id == tool_call_id), None)
        entry = {"call_id": tool_call_id, "name": tool_name, "arguments": arguments, "output": result,
                 "result": result, "error": error}
        assistant.metadata.setdefault("tool_results", []).append(entry)
        if error is not None:
            content = json.dumps({"error": error}, ensure_ascii=False)
        else:
            content = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
        message = Message("tool", content, name=tool_name, tool_call_id=tool_call_id,
                          metadata={"timestamp": _now(), "tool_name": tool_name, **({"error": error} if error else {})})
        self.messages.append(message)
        self.last_updated = message.metadata["timestamp"]
        return message

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """The session as JSON-serializable data (images as paths, URLs or data URIs; no API key)."""
        data: dict[str, Any] = {
            "format": SESSION_FORMAT, "id": self.id, "created_at": self.created_at,
            "last_updated": self.last_updated, "system_prompt": self.system_prompt, "metadata": self.metadata,
            "messages": [_message_to_json(m) for m in self.messages],
        }
        provider = self._provider
        if provider is not None:
            config = {k: v for k, v in normalize_keys(getattr(provider, "config", {}) or {}).items()
                      if k not in _SECRET_KEYS and _jsonable(v)}
            data["provider_state"] = {"provider_name": getattr(provider, "name", None),
                                      "model_name": config.pop("model", None), "provider_config": config}
        return data

    def save(self, filepath: str | os.PathLike) -> None:
        """Write the session to ``filepath`` as JSON (atomically: a temp file renamed into place)."""
        path = Path(filepath)
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        tmp = path.with_name(f".{path.name}.{_new_id()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise FileProcessingError(f"Cannot save the session to {str(path)!r}: {exc.strerror or exc}.") from exc

    @classmethod
    def load(cls, filepath: str | os.PathLike, provider: Any = None,
             provider_config: Mapping[Any, Any] | None = None) -> "Session":
        """Read a session saved by ``save``. Its provider: ``provider`` if given (an instance or a name,
        with ``provider_config``), else the saved one recreated with ``create_llm`` (its API key, never
        saved, comes from ``provider_config`` or the provider's environment variable)."""
        path = Path(filepath)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileProcessingError(f"No saved session at {str(path)!r}.") from None
        except (OSError, ValueError) as exc:
            raise FileProcessingError(f"{str(path)!r} is not a readable session file: {exc}.") from exc
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise FileProcessingError(f"{str(path)!r} is not a saved session (no message list).")
        session = cls(metadata=data.get("metadata") or {})
        session.system_prompt = data.get("system_prompt")
        session.id = data.get("id") or session.id
        session.created_at = data.get("created_at") or session.created_at
        session.last_updated = data.get("last_updated") or session.last_updated
        session.messages = [_message_from_json(m, i) for i, m in enumerate(data["messages"])]
        state = data.get("provider_state") or {}
        if provider is None and state.get("provider_name"):
            config = {**(state.get("provider_config") or {}), **normalize_keys(provider_config or {})}
            if state.get("model_name"):
                config["model"] = state["model_name"]
            provider, provider_config = state["provider_name"], config
        if provider is not None:
            session.set_provider(provider, provider_config)
        return session


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
def _deprecated(old: str, new: str) -> None:
    import warnings

    warnings.warn(f"{old} is the AbstractLLM 1.x spelling: use {new} (docs/migration.md).", DeprecationWarning,
                  stacklevel=3)


def _with_functions(tools: Any, functions: Mapping[str, Any] | None) -> Any:
    """``tools`` with 1.x's ``tool_functions`` (name -> function) joined in: a named definition without a
    function gets it; a function whose name is not among the tools becomes one."""
    if not functions:
        return tools
    out = list(normalize_tools(tools)) if tools else []
    names = {d.name: i for i, d in enumerate(out)}
    for name, fn in functions.items():
        if name in names:
            d = out[names[name]]
            out[names[name]] = ToolDefinition(d.name, d.description, d.parameters, fn,
                                              output_schema=d.output_schema, metadata=d.metadata)
        else:
            out.append(function_to_tool_definition(fn, name=name))
    return out


def _copy(m: Message) -> Message:
    return Message(m.role, text=m.text, images=m.images, videos=m.videos, name=m.name, metadata=m.metadata,
                   tool_calls=m.tool_calls, tool_call_id=m.tool_call_id, reasoning=m.reasoning)


def _joined(chunks: list[Response]) -> Response:
    from .providers.base import aggregate_chunks  # here: the session module stays light to import

    return aggregate_chunks(chunks)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _media_to_json(item: Any) -> Any:
    """A media input in a JSON-safe form: paths and URLs as strings, bytes and images as data URIs."""
    if isinstance(item, os.PathLike):
        return os.fspath(item)
    if isinstance(item, (str, dict)):
        return item
    if isinstance(item, (bytes, bytearray)):
        from .media.encode import sniff_mime

        mime = sniff_mime(bytes(item[:64])) or "application/octet-stream"
        return f"data:{mime};base64,{base64.b64encode(bytes(item)).decode('ascii')}"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with every provider that takes images
        Image = None  # type: ignore[assignment]
    if Image is not None and not isinstance(item, Image.Image) and hasattr(item, "__array_interface__"):
        item = Image.fromarray(item)
    if Image is not None and isinstance(item, Image.Image):
        buf = io.BytesIO()
        item.save(buf, format="PNG")
        return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"
    raise FileProcessingError(f"Cannot save a {type(item).__name__} media input in a session file.")


def _message_to_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.text,
                           "metadata": {k: v for k, v in m.metadata.items() if _jsonable(v)}}
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.images:
        out["images"] = [_media_to_json(i) for i in m.images]
    if m.videos:
        out["videos"] = [_media_to_json(v) for v in m.videos]
    if m.name:
        out["name"] = m.name
    if m.reasoning is not None:
        out["reasoning"] = m.reasoning
    return out


def _message_from_json(raw: Any, index: int) -> Message:
    if not isinstance(raw, dict) or raw.get("role") not in ("system", "user", "assistant", "tool") \
            or not isinstance(raw.get("content", ""), str):
        raise FileProcessingError(f"Saved session: message {index} is not a valid message: {raw!r:.120}.")
    try:
        calls = [ToolCall(str(c["id"]), str(c["name"]), dict(c.get("arguments") or {}))
                 for c in raw.get("tool_calls") or []]
    except (TypeError, KeyError, ValueError, AttributeError):
        raise FileProcessingError(f"Saved session: message {index} has malformed tool calls.") from None
    if not isinstance(raw.get("reasoning") or "", str):
        raise FileProcessingError(f"Saved session: message {index} has a reasoning that is not text.")
    meta = dict(raw.get("metadata") or {})
    if raw.get("timestamp") and "timestamp" not in meta:  # a 1.x session file
        meta["timestamp"] = raw["timestamp"]
    return Message(raw["role"], raw.get("content") or "", images=raw.get("images") or [],
                   videos=raw.get("videos") or [], name=raw.get("name"), metadata=meta, tool_calls=calls,
                   tool_call_id=raw.get("tool_call_id"), reasoning=raw.get("reasoning"))
