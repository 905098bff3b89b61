"""Running the tools a model calls: the loop behind ``Session.generate(..., execute_tools=True)``.

A round is one generation. When its reply calls tools that have Python functions, each call runs (in
order, with the model's arguments as keyword arguments) and its result becomes a ``"tool"`` message
answering that call's id; the next round sends the history with those results. The loop ends with the
first reply that calls no tool, or when a call names a tool without a Python function (an OpenAI dict
or a ``ToolDefinition`` without ``function``: the caller handles that reply), or after ``max_tool_rounds``
rounds that called tools (``Response.metadata["tool_rounds_exhausted"]`` is then ``True``). A forcing
``tool_choice`` (``"required"`` or a tool's name) applies to the first round only; later rounds use
``"auto"``, so a forced call cannot repeat forever (the OpenAI Agents SDK's ``reset_tool_choice``).

A tool that raises does not stop the loop: the model is told, as that call's result,
``{"error": "<ExceptionType>: <message>"}`` (it may retry or explain), and the exception is kept in
the tool message's ``metadata["exception"]``; nothing is swallowed silently. Results that are not
strings are sent as JSON (``str()`` for what JSON cannot hold).
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Sequence

from .exceptions import InvalidParameterError
from .params import MAX_TOOL_ROUNDS
from .tools import ToolDefinition, normalize_tools
from .types import Message, Response, ToolCall

__all__ = ["ToolRunner", "ToolResultEvent", "result_dict"]


class ToolResultEvent(dict):
    """What a streamed Session turn yields after running a tool, between the rounds' chunks: the dict
    ``{"type": "tool_result", "tool_call": {"call_id", "name", "arguments", "output", "error"}}`` (AbstractLLM
    1.x's event), which also reads as an empty ``Response`` chunk (``content`` is ``""``, ``tool_calls`` is
    ``None``), so a loop that prints ``chunk.content`` needs no change."""

    content = ""
    reasoning = None
    tool_calls = None
    finish_reason = None
    usage = None
    model = None
    logprobs = None

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(type="tool_result", tool_call=result)

    @property
    def tool_call(self) -> dict[str, Any]:
        return self["tool_call"]

    @property
    def metadata(self) -> dict[str, Any]:
        return {"tool_result": self["tool_call"]}

    def has_tool_calls(self) -> bool:
        return False


def result_dict(message: Message) -> dict[str, Any]:
    """A tool message's result in 1.x's form: ``{"call_id", "name", "arguments", "output", "error"}``
    (``result`` is also given, the older name of ``output``)."""
    meta = message.metadata
    output = meta.get("output", message.content if "error" not in meta else None)
    return {"call_id": message.tool_call_id, "name": message.name, "arguments": meta.get("arguments"),
            "output": output, "result": output, "error": meta.get("error")}


class ToolRunner:
    """Decides after each round whether the loop goes on, and runs the calls.

    Args:
        tools: the tools of the turn (functions, OpenAI dicts, ``ToolDefinition``).
        execute: run the calls (``execute_tools=True``); ``False``: every reply is returned as it is.
        max_rounds: the most rounds that call tools before the loop stops.
    """

    def __init__(self, tools: Sequence[Any] | None, execute: bool, max_rounds: int | None = None, *,
                 context: dict[str, Any] | None = None) -> None:
        if max_rounds is None:
            max_rounds = MAX_TOOL_ROUNDS
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
            raise InvalidParameterError(f"max_tool_rounds must be a positive integer, got {max_rounds!r}.",
                                        param="max_tool_rounds")
        if execute and not tools:
            raise InvalidParameterError("execute_tools=True needs tools (the session's or this call's).",
                                        param="execute_tools")
        self.execute = bool(execute)
        self.context = dict(context or {})  # for tools declared with requires_context=True
        self.max_rounds = max_rounds
        self.rounds = 0
        self._tools: dict[str, ToolDefinition] = {t.name: t for t in normalize_tools(tools)} if execute else {}

    def should_run(self, response: Response) -> bool:
        """Whether the calls of ``response`` are run and another round follows."""
        calls = response.tool_calls or []
        if not self.execute or not calls:
            return False
        if any(self._tools.get(c.name) is None or self._tools[c.name].function is None
               for c in calls if c.name in self._tools):
            return False  # a tool without a Python function: the caller handles this reply
        if self.rounds >= self.max_rounds:
            response.metadata["tool_rounds_exhausted"] = True
            return False
        self.rounds += 1
        return True

    @staticmethod
    def next_params(params: dict[str, Any]) -> dict[str, Any]:
        """The parameters of the next round: a forcing ``tool_choice`` becomes ``"auto"``."""
        if params.get("tool_choice") not in (None, "auto", "none"):
            return {**params, "tool_choice": "auto"}
        return params

    # The sync and async shells only call the function; finding it, its arguments and the result message
    # are the shared core (``_target``, ``_result``).
    def run(self, calls: Sequence[ToolCall]) -> list[Message]:
        """Run each call, in order (coroutine functions too, on a private event loop); the results."""
        return [self._result(call, *self._invoke(call)) for call in calls]

    async def arun(self, calls: Sequence[ToolCall]) -> list[Message]:
        """``run`` from async code: coroutine functions are awaited, plain ones run in a thread."""
        return [self._result(call, *await self._ainvoke(call)) for call in calls]

    def _invoke(self, call: ToolCall) -> tuple[Any, BaseException | None]:
        try:
            fn, kwargs = self._target(call)
            value = fn(**kwargs)
            if inspect.isawaitable(value):
                import asyncio

                value = asyncio.run(_await(value))
            return value, None
        except Exception as exc:
            return None, exc

    async def _ainvoke(self, call: ToolCall) -> tuple[Any, BaseException | None]:
        import asyncio  # here: importing abstractllm stays light

        try:
            fn, kwargs = self._target(call)
            if inspect.iscoroutinefunction(fn):
                return await fn(**kwargs), None
            value = await asyncio.to_thread(fn, **kwargs)
            return (await value if inspect.isawaitable(value) else value), None
        except Exception as exc:
            return None, exc

    # ------------------------------------------------------------------------------------------ helpers
    def _target(self, call: ToolCall) -> tuple[Any, dict[str, Any]]:
        """The function a call runs and its keyword arguments (``UnknownToolError``: no such tool)."""
        tool = self._tools.get(call.name)
        if tool is None or tool.function is None:
            raise _unknown(call)
        return tool.function, self._arguments(call)

    def _arguments(self, call: ToolCall) -> dict[str, Any]:
        """The call's arguments, plus a ``ToolContext`` as ``context`` for a tool that asked for one."""
        kwargs = dict(call.arguments or {})
        tool = self._tools.get(call.name)
        if tool is not None and tool.function is not None:  # pydantic Field(...) defaults (1.x @tool style)
            try:
                params = inspect.signature(tool.function).parameters.values()
            except (TypeError, ValueError):
                params = ()
            for p in params:
                if p.name not in kwargs and type(p.default).__name__ == "FieldInfo" and not p.default.is_required():
                    kwargs[p.name] = p.default.get_default(call_default_factory=True)
        if tool is not None and tool.metadata.get("requires_context"):
            from .tools.core import ToolContext

            kwargs["context"] = ToolContext(call_id=call.id, tool_name=call.name, **self.context)
        return kwargs

    @staticmethod
    def _result(call: ToolCall, value: Any, error: BaseException | None) -> Message:
        meta: dict[str, Any] = {"tool_name": call.name, "arguments": dict(call.arguments or {})}
        if error is None:
            meta["output"] = value
        if error is not None:
            meta["error"] = f"{type(error).__name__}: {error}"
            meta["exception"] = error  # not saved with the session (not JSON)
            content = json.dumps({"error": f"{type(error).__name__}: {error}"}, ensure_ascii=False)
        elif isinstance(value, str):
            content = value
        else:
            content = json.dumps(value, ensure_ascii=False, default=str)
        return Message("tool", content, tool_call_id=call.id, name=call.name, metadata=meta)


class UnknownToolError(LookupError):
    """The model called a tool the turn does not have (reported to the model as the call's result)."""


def _unknown(call: ToolCall) -> UnknownToolError:
    return UnknownToolError(f"there is no tool named {call.name!r}")


async def _await(value: Any) -> Any:
    return await value
