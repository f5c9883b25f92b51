"""Reading YAML that a user wrote — or that is not YAML at all — into plain data, or one error line.

Both readers of user YAML go through here: the topology loader and ``podlab apply -f`` (several documents).
PyYAML's ``SafeLoader`` builds no arbitrary objects, but three kinds of input still get past it badly:

* **deep nesting** (a file of 5,000 ``[``): its composer recurses once per level and hits Python's recursion
  limit (``RecursionError``, a traceback). Here the composer counts levels and refuses more than ``MAX_DEPTH``
  at the line and column where the limit is crossed; a ``RecursionError`` that still happens (a deep caller
  stack) is refused the same way.
* **an alias-expansion bomb** (``&a [x, x, ...]``, ``&b [*a, *a, ...]``, ...): PyYAML shares one object per
  anchor, so loading is cheap, but anything that walks the data (validation, ``repr``, JSON) pays for the
  expanded size, exponential in the number of anchors. After composing, the expanded size is counted over the
  node graph (each node once, memoised) and the file is refused when aliases make it more than
  ``MAX_EXPANSION`` times its written size and bigger than ``MIN_EXPANDED_LIMIT`` values; an alias that refers
  to its own anchor (a recursive structure) is refused too.
* **binary bytes**: a file that is not UTF-8, holds NUL bytes or characters YAML forbids is named as such with
  the line and column, instead of PyYAML's multi-line reader message.

Duplicate keys in one mapping are refused (PyYAML keeps the last one silently; kubectl refuses them too), merge
keys (``<<``) excepted. Every refusal is ``error(file, "<file>", reason, fix)`` — ``TopologyError`` or
``ManifestError`` — whose text is one line naming the file.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from emulator.errors import TopologyError
from emulator.topology.validate import show

MAX_DEPTH = 64  # a topology nests 5 levels (pods[0].containers[0].ports[0].name); manifests about 10
MAX_EXPANSION = 10  # expanded values per written value that aliases may add
MIN_EXPANDED_LIMIT = 100_000  # below this many values, any use of aliases is fine
FILE = "<file>"

ErrorClass = type[TopologyError]


def read_text(path: str | Path, error: ErrorClass = TopologyError, what: str = "YAML file (UTF-8 text)") -> str:
    """The file's text (``-``: standard input), or ``error`` saying why it cannot be YAML: unreadable, binary,
    not UTF-8."""
    source = str(path)
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise error(source, FILE, f"cannot read '{source}': {exc.strerror or exc}",
                    f"give the path of a readable {what}") from None
    return decode(data, source, error, what)


def decode(data: bytes, source: str, error: ErrorClass = TopologyError, what: str = "YAML file (UTF-8 text)") -> str:
    if b"\0" in data:
        line, col = _line_col_bytes(data, data.index(b"\0"))
        raise error(source, FILE, f"cannot read '{source}' as YAML: it is a binary file (a NUL byte at line "
                    f"{line}, column {col})", f"give a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col_bytes(data, exc.start)
        raise error(source, FILE, f"cannot read '{source}' as YAML: it is not UTF-8 text (byte "
                    f"0x{data[exc.start]:02x} at line {line}, column {col})", f"give a {what}") from None


def load(text: str, source: str, error: ErrorClass = TopologyError) -> Any:
    """The one YAML document in ``text`` as plain data (None for an empty one)."""
    return _load(text, source, error, single=True)[0]


def load_all(text: str, source: str, error: ErrorClass = TopologyError) -> list[Any]:
    """Every document of ``text`` (``---`` separated), as plain data."""
    return _load(text, source, error, single=False)


# -- the loader ----------------------------------------------------------------------------------------------
class _Refused(Exception):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with a nesting limit, an alias-expansion limit and no duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"values are nested more than {MAX_DEPTH} levels deep (line {mark.line + 1}, "
                               f"column {mark.column + 1})", "nest fewer levels; a topology needs about five")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        anchors = self.anchors  # the composer forgets them at the document's end: keep them for the count
        node = super().compose_document()
        _check_expansion(node, anchors)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. ``!!int abc``: int() refuses it
            tag = node.tag.rsplit(":", 1)[-1]
            raise _Refused(f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}: the value "
                           f"tagged !!{tag} cannot be read as one ({exc})", "remove the tag or correct the value")

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    raise _Refused(f"key '{key_node.value}' appears twice in one mapping (lines "
                                   f"{seen[key_node.value]} and {line})",
                                   f"keep one '{key_node.value}' (YAML would silently drop the first)")
                seen[key_node.value] = line
        return super().construct_mapping(node, deep)


def _check_expansion(root: yaml.Node | None, anchors: dict[str, yaml.Node]) -> None:
    if root is None:
        return
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:  # recursion is bounded by MAX_DEPTH
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Refused(f"an alias refers to its own anchor (line {node.start_mark.line + 1}): the data would "
                           "contain itself", "write the values out instead of the alias")
        active.add(key)
        if isinstance(node, yaml.SequenceNode):
            n = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            n = 1
        active.discard(key)
        sizes[key] = n
        return n

    expanded, written = size(root), len(sizes)
    if expanded > max(MIN_EXPANDED_LIMIT, MAX_EXPANSION * written):
        name, biggest = max(((a, sizes.get(id(n), 0)) for a, n in anchors.items()), key=lambda t: t[1],
                            default=("?", 0))
        raise _Refused(f"its aliases expand {written:,} written values into {expanded:,} (anchor &{name} alone "
                       f"into {biggest:,}): an alias-expansion bomb", "write the values out; reuse anchors sparingly")


def _load(text: str, source: str, error: ErrorClass, single: bool) -> list[Any]:
    loader = None
    try:
        loader = StrictLoader(text)  # its reader refuses control characters at once
        if single:
            return [loader.get_single_data()]
        docs = []
        while loader.check_data():
            docs.append(loader.get_data())
        return docs
    except _Refused as exc:
        raise error(source, FILE, exc.message, exc.fix) from None
    except RecursionError:
        raise error(source, FILE, "values are nested too deeply for the YAML reader",
                    "nest fewer levels; a topology needs about five") from None
    except yaml.reader.ReaderError as exc:
        line, col = _line_col_text(text, exc.position)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise error(source, FILE, f"character U+{ord(char):04X} at line {line}, column {col} is not allowed in "
                    "YAML (a control character: is this a binary file?)", "give a YAML text file") from None
    except yaml.YAMLError as exc:
        raise error(source, FILE, *_syntax(text, exc)) from None
    finally:
        if loader is not None:
            loader.dispose()


def _syntax(text: str, exc: yaml.YAMLError) -> tuple[str, str]:
    """(message, fix) for a YAML syntax error: line, column and the text there, on one line."""
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    if mark is None:
        return f"YAML syntax error: {problem}", "correct the YAML syntax"
    lines = text.splitlines()
    near = f"near {show(lines[mark.line].strip())}" if mark.line < len(lines) else "at the end of the file"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and start.line < len(lines):
        near += f", {context} started at line {start.line + 1}: {show(lines[start.line].strip())}"
    return (f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem} ({near})",
            f"correct the YAML at line {mark.line + 1}: indent with spaces, put a space after each ':', close "
            "every quote and bracket")


def _line_col_bytes(data: bytes, offset: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _line_col_text(text: str, offset: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1
