"""``abstractllm cache ls|clear``: the disk prompt cache (``--prompt-cache-dir``), listed or emptied.

The folder is ``--dir``, else ``$ABSTRACTLLM_PROMPT_CACHE_DIR``, else ``prompt-cache`` in the user's cache
folder (``~/.cache/abstractllm/prompt-cache`` on Linux, ``~/Library/Caches/abstractllm/prompt-cache`` on
macOS). Nothing here imports mlx.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["cmd_cache_ls", "cmd_cache_clear", "cache_dir"]


def cache_dir(args: argparse.Namespace) -> Path:
    """``--dir``, else the default folder (``prefix_disk.default_dir``)."""
    from ..providers.mlx.prefix_disk import default_dir

    return Path(args.dir).expanduser() if getattr(args, "dir", None) else default_dir()


def _short(key: str | None, width: int = 60) -> str:
    if key is None:
        return "?"
    return key if len(key) <= width else key[:width - 3] + "..."


def cmd_cache_ls(args: argparse.Namespace) -> int:
    """List the entries (newest first) with their size, token count, kind and model key; then the total."""
    from ..params import format_bytes
    from ..providers.mlx.prefix_disk import list_entries

    folder = cache_dir(args)
    rows = list_entries(folder)
    if args.json:
        print(json.dumps({"dir": str(folder), "entries": rows}, indent=2))
        return 0
    if not rows:
        print(f"no prompt-cache entries in {folder}")
        return 0
    print(f"{'MODIFIED':<19}  {'SIZE':>10}  {'TOKENS':>7}  {'KIND':<9}  MODEL KEY")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["mtime"]))
        tokens = "?" if r["tokens"] is None else str(r["tokens"])
        key = _short(r["model_key"]) if "error" not in r else f"(unreadable: {r['error']})"
        print(f"{when:<19}  {format_bytes(r['bytes']):>10}  {tokens:>7}  {r['cache_type'] or '-':<9}  {key}")
    total = sum(r["bytes"] for r in rows)
    print(f"{len(rows)} entries, {format_bytes(total)} in {folder}")
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    """Delete every entry of the folder (every model's)."""
    from ..providers.mlx.prefix_disk import clear_directory

    folder = cache_dir(args)
    removed = clear_directory(folder)
    print(f"removed {removed} prompt-cache entr{'y' if removed == 1 else 'ies'} from {folder}")
    return 0


def add_cache_parser(sub: argparse._SubParsersAction, lazy) -> None:
    """``abstractllm cache ls|clear`` (registered by ``build_parser``)."""
    where = ("the disk prompt cache's folder (default: $ABSTRACTLLM_PROMPT_CACHE_DIR, else prompt-cache in the "
             "user's cache folder, ~/.cache/abstractllm/prompt-cache on Linux)")
    p = sub.add_parser("cache", help="list or empty the disk prompt cache (serve --prompt-cache-dir)",
                       description="The disk prompt cache: KV caches of prompt prefixes kept across restarts. "
                       "ls lists its entries (every model's), clear deletes them.")
    cmds = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    ls = cmds.add_parser("ls", help="list the entries, newest first", description="List the entries of the "
                         "disk prompt cache, newest first: date, size, tokens, kind and model key.")
    ls.add_argument("--dir", "-d", metavar="DIR", help=where)
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=lazy(".cache:cmd_cache_ls"))
    clear = cmds.add_parser("clear", help="delete every entry", description="Delete every entry of the disk "
                            "prompt cache (every model's).")
    clear.add_argument("--dir", "-d", metavar="DIR", help=where)
    clear.set_defaults(func=lazy(".cache:cmd_cache_clear"))
