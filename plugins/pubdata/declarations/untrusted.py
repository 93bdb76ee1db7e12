"""Committed files read as untrusted input: declarations, reviewed queries, expectations files.

Anyone who can open a pull request can commit such a file, and every command (and the DAG file,
on every parse) reads all of them; so one bad file must cost one error, not a traceback, a hang or
gigabytes of memory. A file is read only when it is a regular file inside the project, at most
MAX_FILE_BYTES, and UTF-8. YAML is checked event by event before any node is built: bounded
nesting, a few aliases at most, and a bounded size once every alias is expanded (an 833-byte
"billion laughs" document expands to millions of nodes, which validation then walks).
Every value echoed in an error message goes through `shorten`.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pubdata.errors import FileRefused

MAX_FILE_BYTES = 1024 * 1024
"""The largest declaration, query or expectations file read (the largest in use is a few KB)."""
MAX_YAML_ALIASES = 20
"""Aliases (*name) one YAML document may use: enough to share a block, too few to build a bomb."""
MAX_YAML_NODES = 50_000
"""Nodes a YAML document may hold with every alias expanded (a large declaration has a few hundred)."""
MAX_YAML_DEPTH = 64
"""Nesting of YAML collections (a declaration nests four deep)."""
ECHO_LIMIT = 80
"""Characters of a value from a file that an error message repeats."""

# libyaml's safe loader parses a declaration ~9x faster than the pure-Python one, and the dag
# processor loads every declaration on every parse; same documents, same errors.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """text cut to `limit` characters (marked with an ellipsis)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(value: Any, limit: int = ECHO_LIMIT) -> str:
    """repr() of a value from a file, cut to `limit` characters: errors never echo a whole input."""
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails is shown by its type
        text = f"<{type(value).__name__}>"
    return clip(text, limit)


def read_text(path: Path, project: Path | None = None) -> str:
    """The file's text; FileRefused (what is wrong with it: what to do) unless it is safe to read."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FileRefused("missing (a dangling link?): restore the file or remove the link") from None
    except OSError as exc:
        raise FileRefused(f"unreadable ({exc.strerror or exc}): fix its permissions") from None
    if stat.S_ISDIR(info.st_mode):
        raise FileRefused("a directory, not a file: rename or remove the directory")
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused("not a regular file (a pipe, socket or device): replace it with a plain text file")
    if project is not None and path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(Path(project).resolve()):
            raise FileRefused("a link to a file outside the project: commit the file itself")
    if info.st_size > MAX_FILE_BYTES:
        raise FileRefused(f"{info.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,}: split or shorten it")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise FileRefused(f"unreadable ({exc.strerror or exc}): fix its permissions") from None
    if len(data) > MAX_FILE_BYTES:  # grew since stat()
        raise FileRefused(f"over the limit of {MAX_FILE_BYTES:,} bytes: split or shorten it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileRefused(f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): save it as UTF-8",
                          line=line) from None


@dataclass
class _Frame:
    anchor: str | None
    size: int = 1


def _line(event: Any) -> int | None:
    mark = getattr(event, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def check_yaml(text: str, loader: type = SafeLoader) -> None:
    """Refuse a YAML text that nests too deep or expands too far, before any node is built.

    Walks the parser's events (linear in the text): counts aliases, and adds up each anchored
    node's size so that every alias counts as the nodes it stands for.
    """
    sizes: dict[str, int] = {}
    stack: list[_Frame] = []
    aliases = expanded = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if len(stack) >= MAX_YAML_DEPTH:
                raise FileRefused(f"YAML nested more than {MAX_YAML_DEPTH} levels deep: flatten it", line=_line(event))
            stack.append(_Frame(event.anchor))
            expanded += 1
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            done = stack.pop()
            if done.anchor is not None:
                sizes[done.anchor] = done.size
            if stack:
                stack[-1].size += done.size
        elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise FileRefused(f"YAML with more than {MAX_YAML_ALIASES} aliases (*name): write the values out",
                                      line=_line(event))
                size = sizes.get(str(event.anchor), 1)
            else:
                size = 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            expanded += size
            if stack:
                stack[-1].size += size
        if expanded > MAX_YAML_NODES:
            raise FileRefused(f"YAML that expands to more than {MAX_YAML_NODES:,} values once its aliases are "
                              "resolved: write the values out instead of aliasing them", line=_line(event))


def compose_yaml(text: str, loader: type = SafeLoader) -> tuple[Any, yaml.Node | None]:
    """(value, node tree) of a YAML document after check_yaml; the tree keeps each node's line."""
    check_yaml(text, loader)
    parser = loader(text)
    try:
        node = parser.get_single_node()
        value = parser.construct_document(node) if node is not None else None
    finally:
        parser.dispose()
    return value, node


def load_yaml(text: str) -> Any:
    """The value of a YAML document after check_yaml."""
    return compose_yaml(text)[0]
