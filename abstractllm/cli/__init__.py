"""The ``abstractllm`` command line: ``generate``, ``chat``, ``serve``, ``models``, ``demo``.

Parsing imports nothing heavy: ``abstractllm --help`` never imports mlx, mlx-lm, mlx-vlm or FastAPI;
each command imports what it needs when it runs. Errors are one line on stderr with a non-zero exit
code (1: the command failed, 2: bad usage, 130: interrupted).
"""

from __future__ import annotations

import sys
from typing import Sequence

from .parser import build_parser

__all__ = ["main", "build_parser"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..exceptions import AbstractLLMError
    from .common import CLIError, fail

    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        return fail(str(exc), exc.code)
    except AbstractLLMError as exc:
        return fail(str(exc), 1)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `abstractllm generate ... | head -1`
        try:
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # python -m abstractllm.cli
    sys.exit(main())
