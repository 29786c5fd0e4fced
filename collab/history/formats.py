"""What a document reads as, whichever Yjs editor wrote it: its text and its Markdown.

Editors keep their content in different root types, under names of their own:

=======================  ==========================  =====================================
binding                  root (usual name)           read as
=======================  ==========================  =====================================
collab's textarea        ``Y.Text`` (``text``)       the text itself
y-codemirror.next,       ``Y.Text`` (``codemirror``,  the text itself
y-monaco                 ``monaco``)
y-quill                  formatted ``Y.Text``        plain text; Markdown from Quill's
                         (``quill``)                 attributes (``rich-text``)
y-prosemirror, Tiptap    ``Y.XmlFragment``           blocks as text; Markdown from the
                         (``prosemirror``,           node and mark names (``xml``)
                         ``default``)
anything else            ``Y.Map`` / ``Y.Array``     JSON (``json``)
=======================  ==========================  =====================================

Which root is "the text" is read from the document (:func:`choose_root`): the root
named by ``Config.text_root`` when that is set, else the first text or XML root among
the usual names above, else the alphabetically first text or XML root. A document
with neither reads as the JSON of its map and array roots. Everything here is pure:
it reads a ``Doc`` and never changes it.

Formatted text (Quill deltas): a line's block format is carried by its newline
character (``header``, ``list``, ``blockquote``, ``code-block``, ``indent``), inline
formats by the characters (``bold``, ``italic``, ``strike``, ``code``, ``link``).
XML (ProseMirror and Tiptap schemas): elements are nodes named as the schema names
them (``paragraph``, ``heading`` with ``level``, ``bulletList`` / ``bullet_list``,
``orderedList``, ``listItem``, ``taskItem``, ``blockquote``, ``codeBlock``,
``hardBreak``, ``horizontalRule``, ``image``); marks are formatting attributes of
the ``XmlText`` children (``bold`` / ``strong``, ``italic`` / ``em``, ``code``,
``strike``, ``link`` with ``href``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.config import Config
from collab.history.roots import Kind, root_kinds, to_json

__all__ = [
    "PREFERRED_ROOTS",
    "Format",
    "Reading",
    "choose_root",
    "markdown_of",
    "read",
    "text_of",
]

#: Root names bindings use by default, in the order they are preferred.
PREFERRED_ROOTS: Final = ("text", "prosemirror", "default", "codemirror", "monaco", "quill")

Format = Literal["text", "rich-text", "xml", "json", "empty"]


@dataclass(frozen=True, slots=True)
class Reading:
    """Which root of a document is its text, and how it is read."""

    root: str | None  # None: no text root (JSON of the other roots, or empty)
    kind: Kind | None
    format: Format


def choose_root(kinds: Mapping[str, Kind | None], config: Config) -> tuple[str, Kind] | None:
    """The root that holds the text: forced by ``config.text_root``, else inferred.

    A forced root the document lacks (or whose items are all deleted) is a text.
    """
    if config.text_root:
        return config.text_root, kinds.get(config.text_root) or "text"
    candidates = {name: kind for name, kind in kinds.items() if kind in ("text", "xml")}
    for name in PREFERRED_ROOTS:
        if name in candidates:
            return name, candidates[name]
    if candidates:
        name = min(candidates)
        return name, candidates[name]
    return None


def read(doc: Doc[Any], config: Config) -> Reading:
    """How ``doc`` reads (see the module docstring). Decodes its state once."""
    kinds = root_kinds(doc.get_update())
    chosen = choose_root(kinds, config)
    if chosen is None:
        if any(kind in ("map", "array") for kind in kinds.values()):
            return Reading(None, None, "json")
        return Reading(None, None, "empty")
    name, kind = chosen
    if kind == "xml":
        return Reading(name, kind, "xml")
    text = doc.get(name, type=Text)
    return Reading(name, kind, "rich-text" if _formatted(text.diff()) else "text")


def text_of(doc: Doc[Any], config: Config, reading: Reading | None = None) -> str:
    """The plain text of ``doc``: exactly the ``Y.Text`` (embeds left out), the blocks
    of an XML fragment (a blank line between blocks), or the JSON of its roots."""
    reading = reading or read(doc, config)
    if reading.format in ("text", "rich-text"):
        assert reading.root is not None
        return str(doc.get(reading.root, type=Text))
    if reading.format == "xml":
        assert reading.root is not None
        return _finish(_Blocks(markdown=False).render(doc.get(reading.root, type=XmlFragment)))
    if reading.format == "json":
        return _json(doc)
    return ""


def markdown_of(doc: Doc[Any], config: Config, reading: Reading | None = None) -> str:
    """``doc`` as Markdown: a plain ``Y.Text`` as it is (it is what the author typed),
    formatted text and XML converted, maps and arrays as a fenced JSON block."""
    reading = reading or read(doc, config)
    if reading.format == "text":
        assert reading.root is not None
        return str(doc.get(reading.root, type=Text))
    if reading.format == "rich-text":
        assert reading.root is not None
        return _finish(_quill_markdown(doc.get(reading.root, type=Text).diff()))
    if reading.format == "xml":
        assert reading.root is not None
        return _finish(_Blocks(markdown=True).render(doc.get(reading.root, type=XmlFragment)))
    if reading.format == "json":
        return f"```json\n{_json(doc)}```\n"
    return ""


def _finish(blocks: list[str]) -> str:
    body = "\n\n".join(block for block in blocks if block)
    return body + "\n" if body else ""


_TYPES: dict[Kind, type[Any]] = {"map": Map, "array": Array}


def _json(doc: Doc[Any]) -> str:
    kinds = root_kinds(doc.get_update())
    value = {
        name: to_json(doc.get(name, type=_TYPES[kind]))
        for name, kind in sorted(kinds.items())
        if kind in _TYPES
    }
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _formatted(chunks: Iterable[tuple[Any, Mapping[str, Any] | None]]) -> bool:
    return any(attrs or not isinstance(insert, str) for insert, attrs in chunks)


# -- inline marks -------------------------------------------------------------------------

#: Mark names of Quill, ProseMirror's basic schema and Tiptap, by what Markdown makes of them.
_MARKS: Final = {
    "bold": "bold",
    "strong": "bold",
    "italic": "italic",
    "em": "italic",
    "strike": "strike",
    "s": "strike",
    "strikethrough": "strike",
    "code": "code",
    "link": "link",
}
#: Opening order (outermost first); code is innermost because nothing nests inside it.
_ORDER: Final = ("link", "bold", "italic", "strike", "code")
_OPEN: Final = {"bold": "**", "italic": "*", "strike": "~~", "code": "`", "link": "["}
_Mark = tuple[str, str]  # (kind, href for links else "")


def _marks(attrs: Mapping[str, Any] | None) -> list[_Mark]:
    """The Markdown marks of one run, outermost first."""
    found: dict[str, str] = {}
    for name, value in (attrs or {}).items():
        # y-prosemirror names overlapping marks "<name>--<hash>".
        kind = _MARKS.get(name.split("--", 1)[0])
        if kind is None or value is None or value is False:
            continue
        href = ""
        if kind == "link":
            href = str(value.get("href") or "") if isinstance(value, Mapping) else str(value)
            if not href:
                continue
        found[kind] = href
    return [(kind, found[kind]) for kind in _ORDER if kind in found]


def _closer(mark: _Mark) -> str:
    return f"]({mark[1]})" if mark[0] == "link" else _OPEN[mark[0]]


class _Inline:
    """Builds one line of Markdown from runs of text that carry marks.

    Marks stay open across runs (``**bold *both* bold**``), and spaces at the edge
    of a marked run go outside its markers (``**bold** text``, never ``**bold **``).
    """

    def __init__(self, markdown: bool) -> None:
        self.markdown = markdown
        self.out = ""
        self.stack: list[_Mark] = []

    def run(self, text: str, attrs: Mapping[str, Any] | None) -> None:
        if not self.markdown:
            self.out += text
            return
        if not text.strip():
            self.out += text  # a blank run neither opens nor closes anything
            return
        wanted = _marks(attrs)
        while self.stack and any(mark not in wanted for mark in self.stack):
            self._close()
        stripped = text.lstrip()
        self.out += text[: len(text) - len(stripped)]
        for mark in wanted:
            if mark not in self.stack:
                self.stack.append(mark)
                self.out += _OPEN[mark[0]]
        self.out += stripped

    def raw(self, text: str) -> None:
        """Text that is not marked (a line break, an image): close every mark first."""
        self.close_all()
        self.out += text

    def close_all(self) -> str:
        while self.stack:
            self._close()
        return self.out

    def _close(self) -> None:
        mark = self.stack.pop()
        body = self.out.rstrip(" \t")
        self.out = body + _closer(mark) + self.out[len(body) :]


# -- Quill deltas ---------------------------------------------------------------------------

_Line = tuple[list[tuple[Any, Mapping[str, Any] | None]], Mapping[str, Any]]


def _quill_lines(chunks: Iterable[tuple[Any, Mapping[str, Any] | None]]) -> list[_Line]:
    """Split a delta into lines: (inline runs, the attributes of the line's newline)."""
    lines: list[_Line] = []
    current: list[tuple[Any, Mapping[str, Any] | None]] = []
    for insert, attrs in chunks:
        if not isinstance(insert, str):
            current.append((insert, attrs))
            continue
        parts = insert.split("\n")
        for index, part in enumerate(parts):
            if part:
                current.append((part, attrs))
            if index < len(parts) - 1:
                lines.append((current, attrs or {}))
                current = []
    if current:
        lines.append((current, {}))
    return lines


def _embed(value: Any) -> str:
    """Quill's standard embeds as Markdown; anything else is left out."""
    if isinstance(value, Mapping):
        if isinstance(value.get("image"), str):
            return f"![]({value['image']})"
        if isinstance(value.get("video"), str):
            return f"[video]({value['video']})"
        if isinstance(value.get("formula"), str):
            return f"${value['formula']}$"
    return ""


def _quill_markdown(chunks: Iterable[tuple[Any, Mapping[str, Any] | None]]) -> list[str]:
    blocks: list[str] = []
    group: list[str] = []  # lines of the list, code block or quote being built
    group_kind: str | None = None
    counters: list[int] = []  # ordered-list numbers, one per indent level
    widths: list[int] = []  # width of each open level's marker ("- " 2, "10. " 4)

    def flush() -> None:
        nonlocal group, group_kind
        if group_kind == "code":
            blocks.append("\n".join(group) + "\n```")
        elif group:
            blocks.append("\n".join(group))
        group, group_kind = [], None

    for runs, block in _quill_lines(chunks):
        inline = _Inline(markdown=True)
        for insert, attrs in runs:
            if isinstance(insert, str):
                inline.run(insert, attrs)
            else:
                inline.raw(_embed(insert))
        line = inline.close_all()
        code = block.get("code-block")
        if code:
            language = code if isinstance(code, str) and code != "plain" else ""
            if group_kind != f"code:{language}":
                flush()
                group, group_kind = [f"```{language}"], f"code:{language}"
            group.append("".join(str(i) for i, _ in runs if isinstance(i, str)))
            continue
        if group_kind and group_kind.startswith("code:"):
            group_kind = "code"
            flush()
        kind = block.get("list")
        if kind:
            depth = int(block.get("indent") or 0)
            family = "list:ordered" if kind == "ordered" else "list:bullet"
            if not (group_kind or "").startswith("list:") or (depth == 0 and group_kind != family):
                flush()
                group_kind, counters, widths = family, [], []
            del counters[depth + 1 :]
            while len(counters) <= depth:
                counters.append(0)
            counters[depth] += 1
            marker = {"ordered": f"{counters[depth]}.", "checked": "- [x]", "unchecked": "- [ ]"}
            prefix = marker.get(str(kind), "-")
            if kind != "ordered":
                counters[depth] = 0
            # A nested item is indented to the content of its parent's line.
            del widths[depth:]
            indent = sum(widths) + 2 * (depth - len(widths))
            widths.append(len(prefix.split(" ")[0]) + 1)
            group.append(" " * indent + f"{prefix} {line}")
            continue
        if block.get("blockquote"):
            if group_kind != "quote":
                flush()
                group_kind = "quote"
            group.append(f"> {line}" if line else ">")
            continue
        flush()
        header = block.get("header")
        if header and line:
            blocks.append("#" * min(int(header), 6) + " " + line)
        elif line:
            blocks.append(line)
    if group_kind and group_kind.startswith("code:"):
        group_kind = "code"
    flush()
    return blocks


# -- ProseMirror / Tiptap XML ------------------------------------------------------------------


def _tag(node: XmlElement) -> str:
    """A node name without the schema's spelling: ``bullet_list`` and ``bulletList`` agree."""
    return (node.tag or "").replace("_", "").lower()


def _attr(node: XmlElement, key: str) -> Any:
    return node.attributes.get(key)


_LISTS: Final = {"bulletlist", "orderedlist", "tasklist"}
_TEXTBLOCKS: Final = {"paragraph", "heading"}


class _Blocks:
    """Renders an XML fragment as blocks of text (``markdown=False``) or Markdown."""

    def __init__(self, markdown: bool) -> None:
        self.markdown = markdown

    def render(self, parent: XmlFragment | XmlElement) -> list[str]:
        """The blocks of ``parent``'s children, in order."""
        blocks: list[str] = []
        loose: list[XmlText | XmlElement] = []  # inline content directly in a container
        for child in parent.children:
            if isinstance(child, XmlText) or (
                isinstance(child, XmlElement) and _tag(child) in ("hardbreak", "image", "text")
            ):
                loose.append(child)
                continue
            if loose:
                blocks.append(self.inline(loose))
                loose = []
            if isinstance(child, XmlElement):
                blocks.extend(self.block(child))
        if loose:
            blocks.append(self.inline(loose))
        return blocks

    def block(self, node: XmlElement) -> list[str]:
        tag = _tag(node)
        if tag == "paragraph":
            return [self.inline(node.children)]
        if tag == "heading":
            text = self.inline(node.children)
            if not self.markdown or not text:
                return [text]
            level = min(max(int(_attr(node, "level") or 1), 1), 6)
            return ["#" * level + " " + text]
        if tag in _LISTS:
            return [self.list(node)]
        if tag == "blockquote":
            inner = "\n\n".join(b for b in self.render(node) if b)
            if not self.markdown:
                return [inner]
            return ["\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))]
        if tag == "codeblock":
            code = "".join(str(c) for c in node.children if isinstance(c, XmlText))
            if not self.markdown:
                return [code]
            language = _attr(node, "language") or ""
            return [f"```{language}\n{code}\n```"]
        if tag == "horizontalrule":
            return ["---"]
        return self.render(node)  # an unknown container: its content

    def list(self, node: XmlElement) -> str:
        tag = _tag(node)
        number = int(_attr(node, "start") or 1)
        lines: list[str] = []
        for item in node.children:
            if not isinstance(item, XmlElement):
                continue
            if tag == "orderedlist":
                marker = f"{number}."
                number += 1
            elif _tag(item) == "taskitem":
                marker = "- [x]" if _attr(item, "checked") else "- [ ]"
            else:
                marker = "-"
            body = "\n".join(b for b in self.render(item) if b)
            indent = " " * (len(marker) + 1) if marker[0].isdigit() else "  "
            first, *rest = body.split("\n") if body else [""]
            lines.append(f"{marker} {first}".rstrip())
            lines.extend(indent + line if line else "" for line in rest)
        return "\n".join(lines)

    def inline(self, children: Iterable[XmlText | XmlElement | XmlFragment]) -> str:
        line = _Inline(self.markdown)
        for child in children:
            if isinstance(child, XmlText):
                for insert, attrs in child.diff():
                    if isinstance(insert, str):
                        line.run(insert, attrs)
            elif isinstance(child, XmlElement):
                tag = _tag(child)
                if tag == "hardbreak":
                    line.raw("\\\n" if self.markdown else "\n")
                elif tag == "image":
                    alt = str(_attr(child, "alt") or "")
                    line.raw(f"![{alt}]({_attr(child, 'src') or ''})" if self.markdown else alt)
                else:
                    line.raw(self.inline(child.children))
        return line.close_all()
