"""``abstractllm chat``: an interactive conversation that keeps its history.

Each turn sends the whole history, so the provider's prompt cache reuses the previous turns' keys and
values instead of recomputing them. Commands: ``/image PATH`` (attach to the next message), ``/reset``,
``/help``, ``/exit`` (or end of input). Ctrl-C during a reply stops that reply (its partial text stays in
the history); at the prompt it leaves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..enums import ModelCapability
from ..exceptions import AbstractLLMError
from .commands import footer, sampling_params
from .common import llm_config_from, make_llm, model_from, stream_to

__all__ = ["cmd_chat", "ChatSession"]

HELP = "commands: /image PATH (attach to your next message), /reset (forget the conversation), /help, /exit"


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
        try:
            last = None
            stream = self.llm.generate(system_prompt=self.system, messages=[*self.history, user], stream=True,
                                       **self.params)
            try:
                for chunk in stream:
                    parts.append(chunk.content)
                    last = stream_to([chunk], out)
            except KeyboardInterrupt:  # Ctrl-C stops this reply (the generation is cancelled), not the chat
                stream.close()
                print("\n(interrupted)", file=out, flush=True)
            else:
                print(file=out)
                if self.stats:
                    print(footer(last), file=sys.stderr, flush=True)
        except AbstractLLMError as exc:
            print(f"\nerror: {' '.join(str(exc).split())}", file=out)
            return
        self.pending_images.clear()
        self.history += [user, {"role": "assistant", "content": "".join(parts)}]


def cmd_chat(args: argparse.Namespace) -> int:
    llm = make_llm(model_from(args), load=True, **llm_config_from(args))
    interactive = sys.stdin.isatty()
    out = sys.stdout
    try:
        session = ChatSession(llm, args.system, sampling_params(args), stats=args.stats)
        print(f"Chatting with {llm.config['model']}. {HELP}", file=sys.stderr)
        while True:
            if interactive:
                try:
                    line = input("you> ")
                except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C at the prompt: leave
                    print(file=out)
                    break
            else:
                try:
                    line = sys.stdin.readline()
                except KeyboardInterrupt:
                    break
                if not line:
                    break
                line = line.rstrip("\n")
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not session.command(line, out):
                    break
                continue
            if not interactive:
                print(f"you> {line}", file=out)
            out.write("assistant> ")
            session.turn(line, out)
    finally:
        llm.close()
    return 0
