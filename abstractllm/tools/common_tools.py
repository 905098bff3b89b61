"""File tools for a model, as AbstractLLM 1.x shipped them, confined to one folder.

    from abstractllm.tools.common_tools import read_file, list_files, search_files, set_root
    set_root("/path/to/project")           # else $ABSTRACTLLM_TOOLS_ROOT, else the current directory
    session = Session(provider=llm, tools=[read_file, list_files, search_files])

    tools = file_tools("/path/to/project")  # or: three tools bound to their own root

Path safety: every path the model gives is resolved (symlinks followed) against the root, and a path
that resolves outside it is refused: the tool returns an ``"Error: ..."`` text (the model reads it as the
call's result) and touches nothing. The root is the one the caller gives (``set_root`` or ``file_tools``;
``$ABSTRACTLLM_TOOLS_ROOT``); by default the current working directory at call time. Hidden files and
folders (``.git``, ``.env``, ...) are left out unless ``include_hidden=True``. Reads are capped at
``MAX_READ_BYTES``. These tools only read: 1.x's ``write_file``, ``edit_file``, ``execute_command`` and the
web tools are not carried (docs/migration.md).

The signatures and the text they return follow 1.x's, so prompts written for them keep working.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Callable, Optional

from .core import register

__all__ = ["read_file", "list_files", "search_files", "set_root", "get_root", "file_tools", "MAX_READ_BYTES"]

#: the most bytes ``read_file`` returns, and ``search_files`` reads of one file
MAX_READ_BYTES = 1_000_000
_ROOT: Optional[Path] = None


def set_root(path: str | os.PathLike | None) -> None:
    """Confine the module's tools to ``path`` (``None``: back to ``$ABSTRACTLLM_TOOLS_ROOT`` / the current
    directory)."""
    global _ROOT
    _ROOT = Path(path).expanduser().resolve() if path is not None else None


def get_root() -> Path:
    """The folder the module's tools are confined to now."""
    if _ROOT is not None:
        return _ROOT
    env = os.environ.get("ABSTRACTLLM_TOOLS_ROOT")
    return Path(env).expanduser().resolve() if env else Path.cwd().resolve()


class _Refused(Exception):
    pass


def _inside(root: Path, given: str) -> Path:
    """``given`` resolved against ``root``; ``_Refused`` when it resolves outside it."""
    if not isinstance(given, str) or "\x00" in given:
        raise _Refused(f"invalid path {given!r}")
    path = Path(given).expanduser()
    resolved = (path if path.is_absolute() else root / path).resolve()
    if resolved != root and root not in resolved.parents:
        raise _Refused(f"'{given}' is outside the allowed folder {root}")
    return resolved


def _hidden(path: Path, root: Path) -> bool:
    rel = path.relative_to(root).parts if path != root else ()
    return any(p.startswith(".") for p in rel)


def _patterns(pattern: str) -> list[str]:
    return [p.strip() for p in (pattern or "*").split("|") if p.strip()] or ["*"]


def _read_file(root: Path, file_path: str, should_read_entire_file: bool = True, start_line_one_indexed: int = 1,
               end_line_one_indexed_inclusive: Optional[int] = None, include_hidden: bool = False) -> str:
    try:
        path = _inside(root, file_path)
    except _Refused as exc:
        return f"Error: {exc}"
    if not include_hidden and _hidden(path, root):
        return f"Error: '{file_path}' is hidden (pass include_hidden=True to read it)"
    if not path.exists():
        return f"Error: File '{file_path}' does not exist"
    if not path.is_file():
        return f"Error: '{file_path}' is not a file"
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_READ_BYTES + 1)
    except OSError as exc:
        return f"Error reading file: {exc.strerror or exc}"
    truncated = len(data) > MAX_READ_BYTES
    text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
    if not should_read_entire_file:
        lines = text.splitlines()
        start = max(1, int(start_line_one_indexed or 1))
        end = len(lines) if end_line_one_indexed_inclusive is None else int(end_line_one_indexed_inclusive)
        if start > len(lines):
            return f"Error: Start line {start} exceeds file length ({len(lines)} lines)"
        selected = lines[start - 1:max(start - 1, end)]
        return "\n".join(f"{n:4d}: {line}" for n, line in enumerate(selected, start))
    return text + (f"\n... (truncated at {MAX_READ_BYTES} bytes)" if truncated else "")


def _list_files(root: Path, directory_path: str = ".", pattern: str = "*", recursive: bool = False,
                include_hidden: bool = False, head_limit: Optional[int] = 50) -> str:
    try:
        folder = _inside(root, directory_path)
    except _Refused as exc:
        return f"Error: {exc}"
    if not folder.is_dir():
        return f"Error: Directory '{directory_path}' does not exist"
    pats = [p.lower() for p in _patterns(pattern)]
    found = []
    walker = folder.rglob("*") if recursive else folder.iterdir()
    for item in walker:
        try:
            item.resolve().relative_to(root)
        except ValueError:
            continue  # a link out of the root
        if not include_hidden and _hidden(item, root):
            continue
        if any(fnmatch.fnmatch(item.name.lower(), p) for p in pats):
            found.append(item)
    if not found:
        return f"No files found matching '{pattern}' in '{directory_path}'"
    found.sort(key=lambda p: (not p.is_dir(), str(p).lower()))
    shown = found if not head_limit else found[:int(head_limit)]
    lines = [f"Files in '{directory_path}' matching '{pattern}':"]
    for item in shown:
        rel = item.relative_to(folder)
        lines.append(f"  📁 {rel}/" if item.is_dir() else f"  📄 {rel} ({item.stat().st_size:,} bytes)")
    if len(shown) < len(found):
        lines.append(f"  ... {len(found) - len(shown)} more (raise head_limit to see them)")
    return "\n".join(lines)


def _search_files(root: Path, pattern: str, path: str = ".", output_mode: str = "files_with_matches",
                  head_limit: Optional[int] = 20, file_pattern: str = "*", case_sensitive: bool = False,
                  multiline: bool = False) -> str:
    try:
        base = _inside(root, path)
    except _Refused as exc:
        return f"Error: {exc}"
    if output_mode not in ("files_with_matches", "content", "count"):
        return "Error: output_mode must be 'files_with_matches', 'content' or 'count'"
    try:
        regex = re.compile(pattern, (0 if case_sensitive else re.IGNORECASE) | (re.DOTALL | re.M if multiline else 0))
    except re.error as exc:
        return f"Error: invalid regular expression: {exc}"
    files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    pats = [p.lower() for p in _patterns(file_pattern)]
    out: list[str] = []
    limit = int(head_limit) if head_limit else None
    for f in files:
        try:
            f.resolve().relative_to(root)
        except ValueError:
            continue
        if _hidden(f, root) or not any(fnmatch.fnmatch(f.name.lower(), p) for p in pats):
            continue
        try:
            text = f.read_bytes()[:MAX_READ_BYTES].decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        rel = f.relative_to(root).as_posix()
        if output_mode == "files_with_matches":
            if regex.search(text):
                out.append(rel)
        elif output_mode == "count":
            n = len(regex.findall(text))
            if n:
                out.append(f"{rel}: {n}")
        else:
            for i, line in enumerate(text.splitlines(), 1):
                if regex.search(line):
                    out.append(f"{rel}:{i}: {line}")
        if limit and len(out) >= limit:
            out = out[:limit]
            break
    if not out:
        return f"No matches found for pattern '{pattern}'"
    header = {"files_with_matches": "Files matching", "count": "Match counts for", "content": "Matches for"}
    return f"{header[output_mode]} '{pattern}':\n" + "\n".join(f"  {line}" for line in out)


def file_tools(root: str | os.PathLike) -> list[Callable[..., str]]:
    """``[read_file, list_files, search_files]`` confined to ``root`` (each a tool function with the same
    name and schema as the module's)."""
    folder = Path(root).expanduser().resolve()

    def read_file(file_path: str, should_read_entire_file: bool = True, start_line_one_indexed: int = 1,
                  end_line_one_indexed_inclusive: Optional[int] = None, include_hidden: bool = False) -> str:
        return _read_file(folder, file_path, should_read_entire_file, start_line_one_indexed,
                          end_line_one_indexed_inclusive, include_hidden)

    def list_files(directory_path: str = ".", pattern: str = "*", recursive: bool = False,
                   include_hidden: bool = False, head_limit: Optional[int] = 50) -> str:
        return _list_files(folder, directory_path, pattern, recursive, include_hidden, head_limit)

    def search_files(pattern: str, path: str = ".", output_mode: str = "files_with_matches",
                     head_limit: Optional[int] = 20, file_pattern: str = "*", case_sensitive: bool = False,
                     multiline: bool = False) -> str:
        return _search_files(folder, pattern, path, output_mode, head_limit, file_pattern, case_sensitive,
                             multiline)

    for fn, public in ((read_file, _READ_DOC), (list_files, _LIST_DOC), (search_files, _SEARCH_DOC)):
        fn.__doc__ = public
    return [register(read_file), register(list_files), register(search_files)]


_READ_DOC = """Read the contents of a file, whole or a range of lines.

Args:
    file_path: the file's path, relative to the project folder.
    should_read_entire_file: read the whole file (else the line range below).
    start_line_one_indexed: the first line to read (1-based).
    end_line_one_indexed_inclusive: the last line to read (inclusive); none: to the end.
    include_hidden: allow hidden files (names starting with a dot).
"""
_LIST_DOC = """List the files and folders of a directory whose names match a pattern (case-insensitive).

Args:
    directory_path: the folder, relative to the project folder.
    pattern: a glob pattern, or several separated by '|' (e.g. "*.py|*.md").
    recursive: also list the subfolders' contents.
    include_hidden: include hidden files and folders.
    head_limit: the most entries to list.
"""
_SEARCH_DOC = """Search the files for a regular expression, like grep.

Args:
    pattern: the regular expression to find.
    path: the folder or file to search, relative to the project folder.
    output_mode: "files_with_matches", "content" (matching lines) or "count".
    head_limit: the most results to return.
    file_pattern: a glob pattern the file names must match ("*.py|*.md" for several).
    case_sensitive: match case.
    multiline: let the pattern span lines.
"""


def read_file(file_path: str, should_read_entire_file: bool = True, start_line_one_indexed: int = 1,
              end_line_one_indexed_inclusive: Optional[int] = None, include_hidden: bool = False) -> str:
    return _read_file(get_root(), file_path, should_read_entire_file, start_line_one_indexed,
                      end_line_one_indexed_inclusive, include_hidden)


def list_files(directory_path: str = ".", pattern: str = "*", recursive: bool = False, include_hidden: bool = False,
               head_limit: Optional[int] = 50) -> str:
    return _list_files(get_root(), directory_path, pattern, recursive, include_hidden, head_limit)


def search_files(pattern: str, path: str = ".", output_mode: str = "files_with_matches",
                 head_limit: Optional[int] = 20, file_pattern: str = "*", case_sensitive: bool = False,
                 multiline: bool = False) -> str:
    return _search_files(get_root(), pattern, path, output_mode, head_limit, file_pattern, case_sensitive, multiline)


read_file.__doc__, list_files.__doc__, search_files.__doc__ = _READ_DOC, _LIST_DOC, _SEARCH_DOC
read_file = register(read_file)
list_files = register(list_files)
search_files = register(search_files)
