"""``abstractllm chat``: an interactive conversation that keeps its history.

Each turn sends the whole history, so the provider's prompt cache reuses the previous turns' keys and
values instead of recomputing them. Commands: ``/image PATH`` (attach to the next message), ``/reset``,
``/help``, ``/exit`` (or end of input).

Ctrl-C: during a reply (from the moment the line is sent, through templating and prefill, until the
last chunk) it stops that reply, whatever moment it lands, however often it is pressed: a SIGINT handler
cancels the reply's stream (a flag the generation checks at its next token or prefill step), so no
``KeyboardInterrupt`` is ever raised in the middle of the chat's own code. The partial text stays in the
history. Anywhere else (at the prompt) it leaves the chat with exit code 0. The chat installs its own
SIGINT handling, so it works even when the process inherited an ignored SIGINT (a shell's background
job, some CI runners).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ..enums import ModelCapability
from ..exceptions import AbstractLLMError
from .commands import footer, sampling_params
from .common import ChunkPrinter, llm_config_from, make_llm, model_from

__all__ = ["cmd_chat", "ChatSession", "ReplyInterrupts"]

HELP = "commands: /image PATH (attach to your next message), /reset (forget the conversation), /help, /exit"


class ReplyInterrupts:
    """While active (``with``), SIGINT cancels the current reply's stream instead of raising.

    The handler only sets flags (signal-safe); a Ctrl-C that lands before the stream exists (during
    templating) cancels it as soon as it is attached. Outside the main thread it does nothing (Python
    delivers signals to the main thread only).
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._stream: Any = None
        self._previous: Any = None
        self._active = False

    def _handler(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        stream = self._stream
        if stream is not None:
            stream.cancel()

    def attach(self, stream: Any) -> Any:
        self._stream = stream
        if self.interrupted:
            stream.cancel()
        return stream

    def __enter__(self) -> "ReplyInterrupts":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            self._active = False
        self._stream = None


class ChatSession:
    """The conversation state: history and pending images."""

    def __init__(self, llm: Any, system: str | None, params: dict[str, Any], stats: bool = False) -> None:
        self.llm, self.system, self.params, self.stats = llm, system, params, stats
        self.history: list[dict[str, Any]] = []
        self.pending_images: list[str] = []

    def command(self, line: str, out: Any) -> bool:
        """Run a /command; False means exit."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/reset":
            self.history.clear()
            self.pending_images.clear()
            print("(conversation reset)", file=out)
        elif name == "/help":
            print(HELP, file=out)
        elif name == "/image":
            self.add_image(arg, out)
        else:
            print(f"unknown command {name}; {HELP}", file=out)
        return True

    def add_image(self, arg: str, out: Any) -> None:
        if not arg:
            print("usage: /image PATH", file=out)
            return
        if ModelCapability.VISION not in self.llm.get_capabilities():
            print("error: this model is text-only; /image needs a vision model", file=out)
            return
        path = Path(arg).expanduser()
        if not arg.startswith(("http://", "https://")) and not path.is_file():
            print(f"error: no such file: {arg}", file=out)
            return
        self.pending_images.append(arg if arg.startswith(("http://", "https://")) else str(path.resolve()))
        print(f"(image attached: {arg}; it goes with your next message)", file=out)

    def turn(self, text: str, out: Any) -> None:
        content: Any = text
        if self.pending_images:
            content = [{"type": "text", "text": text}] + [{"type": "image", "image": p} for p in self.pending_images]
        user = {"role": "user", "content": content}
        parts: list[str] = []
        thoughts: list[str] = []
        last = None
        printer = ChunkPrinter(out)  # the reasoning apart from the answer, dimmed on a terminal
        with ReplyInterrupts() as interrupts:  # Ctrl-C from here on cancels this reply, not the chat
            out.write("assistant> ")  # once this shows, Ctrl-C stops the reply (it is inside the scope)
            out.flush()
            try:
                stream = interrupts.attach(self.llm.generate(
                    system_prompt=self.system, messages=[*self.history, user], stream=True, **self.params))
                for chunk in stream:
                    parts.append(chunk.content)
                    thoughts.append(chunk.reasoning or "")
                    printer.write(chunk)
                    last = chunk
            except AbstractLLMError as exc:
                printer.close()
                print(f"\nerror: {' '.join(str(exc).split())}", file=out)
                return
            finally:
                printer.close()
        if last is not None and last.finish_reason == "cancelled":
            print("\n(interrupted)", file=out, flush=True)
        else:
            print(file=out)
            if self.stats and last is not None:
                print(footer(last), file=sys.stderr, flush=True)
        self.pending_images.clear()
        reply: dict[str, Any] = {"role": "assistant", "content": "".join(parts)}
        if any(thoughts):
            reply["reasoning_content"] = "".join(thoughts)  # the chat template decides whether it is shown again
        self.history += [user, reply]


def _read_line(interactive: bool) -> str | None:
    """The next input line (without its newline), or None at end of input."""
    if interactive:
        try:
            return input("you> ")
        except EOFError:  # Ctrl-D
            return None
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


def cmd_chat(args: argparse.Namespace) -> int:
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C must reach the chat even if this process inherited SIGINT as ignored (a background job
        # of a non-interactive shell): at the prompt it raises KeyboardInterrupt (leave), during a reply
        # ReplyInterrupts turns it into a cancel.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    llm = make_llm(model_from(args), load=True, **llm_config_from(args))
    interactive = sys.stdin.isatty()
    out = sys.stdout
    try:
        session = ChatSession(llm, args.system, sampling_params(args), stats=args.stats)
        print(f"Chatting with {llm.config['model']}. {HELP}", file=sys.stderr)
        while True:
            line = _read_line(interactive)
            if line is None:
                if interactive:
                    print(file=out)
                break
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not session.command(line, out):
                    break
                continue
            if not interactive:
                print(f"you> {line}", file=out)
            session.turn(line, out)
    except KeyboardInterrupt:  # Ctrl-C outside a reply (at the prompt): leave
        print(file=out)
    finally:
        llm.close()
    return 0
