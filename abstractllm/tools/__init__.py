"""Tools the model may call: definitions, from Python functions or from OpenAI-style dicts.

    from abstractllm.tools import register      # also spelled tool, as in AbstractLLM 1.x

    @register
    def get_weather(city: str, unit: str = "celsius") -> str:
        '''The current weather in a city.

        Args:
            city: the city's name.
            unit: "celsius" or "fahrenheit".
        '''
        return f"Sunny in {city}"

    response = llm.generate("Weather in Paris?", tools=[get_weather], tool_choice="required")
    response.tool_calls  # [ToolCall(id="call_...", name="get_weather", arguments={"city": "Paris"})]

A tool is a Python callable (its JSON schema comes from the signature, type hints, pydantic ``Field``
defaults and docstring), an OpenAI function dict (``{"type": "function", "function": {"name",
"description", "parameters"}}``, or just the inner dict, ``input_schema`` accepted for ``parameters``), or a
``ToolDefinition``. ``tool_choice`` is ``"auto"`` (the model decides), ``"none"`` (no tool: the tools are not
shown to the model), ``"required"`` (a call to some tool), or one tool by its name (``"get_weather"`` or
``{"type": "function", "function": {"name": "get_weather"}}``). In a ``Session``, the calls of Python
functions run by default (``abstractllm.tool_runner``).

The module ``abstractllm.tools.core`` holds the definitions; ``abstractllm.tools.common_tools`` file tools
confined to a root folder (``read_file``, ``list_files``, ``search_files``); ``abstractllm.tools.enhanced_core``
AbstractLLM 1.x's enhanced-tool names. The 1.x names (``ToolCall``, ``ToolResult``, ``ToolCallResponse`` /
``ToolCallRequest``, ``tool``, ``ToolContext``, ``ToolChoice``) are the objects this package uses.
Nothing heavy is imported here.
"""

from __future__ import annotations

from ..types import ToolCall
from .core import (
    TOOL_OPTIONS,
    ToolCallRequest,
    ToolCallResponse,
    ToolChoice,
    ToolContext,
    ToolDefinition,
    ToolResult,
    check_schema,
    function_to_tool_definition,
    normalize_tool_choice,
    normalize_tools,
    register,
    registered_tools,
    tool,
)

#: 1.x spellings
create_tool_from_function = function_to_tool_definition
ENHANCED_TOOLS_AVAILABLE = True

__all__ = ["ToolDefinition", "function_to_tool_definition", "register", "registered_tools", "normalize_tools",
           "normalize_tool_choice", "ToolChoice", "ToolCall", "ToolResult", "ToolCallResponse", "ToolCallRequest",
           "tool", "ToolContext", "TOOL_OPTIONS", "create_tool_from_function"]
