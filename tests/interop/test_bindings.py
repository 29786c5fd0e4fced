"""History of documents written by real Yjs editor bindings, not only our textarea.

tests/interop/bindings.mjs builds each document with the npm packages themselves
(y-prosemirror and @tiptap/y-tiptap converting ProseMirror JSON and updating the
fragment as their sync plugins do, Y.Text.applyDelta with Quill's deltas, plain
Y.Text edits under CodeMirror's and Monaco's root names, maps and arrays) and prints
each edit's update bytes. Each update is logged as one version here; the tests read
the versions, the text and Markdown of each, a diff and the attribution back.
"""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest

from collab.config import Config
from collab.history import versions as history
from collab.history.export import export
from collab.history.versions import At
from collab.store import NewEntry
from collab.store.memory import MemoryStore

from .node_peer import HERE, require_node_deps

pytestmark = pytest.mark.interop

CONFIG = Config(version_gap_seconds=60.0)

PROSEMIRROR_TEXT = """\
Notes

Hello bold and em with code and a link

Lists

- one
- two
  - two and a half

1. first
2. second

A quote.

x = 1
print(x)

line one
line two

---

The end.
"""

PROSEMIRROR_MD = """\
# Notes

Hello **bold** and *em* with `code` and [a link](https://example.org)

## Lists

- one
- two
  - two and a half

1. first
2. second

> A quote.

```{language}
x = 1
print(x)
```

line one\\
line two

---

The end.
"""

QUILL_TEXT = """\
Shopping
Buy fresh bread at the bakery
milk
oat
eggs
Pay
Leave
total = sum(prices)
Do not forget the bag
"""

QUILL_MD = """\
## Shopping

Buy **fresh** bread at [*the bakery*](https://bakery.example)

- milk
  - oat
- eggs

1. Pay
2. Leave

```
total = sum(prices)
```

> Do not forget `the bag`
"""

CODE_TEXT = 'def greet(name):\n    return "hello " + name\n\nprint(greet("ada"))\n'

JSON_TEXT = """\
{
  "board": {
    "owner": "ada",
    "title": "Sprint 1"
  },
  "cards": [
    {
      "done": false,
      "title": "Write docs"
    },
    {
      "done": true,
      "title": "Fix bug"
    },
    {
      "done": false,
      "title": "Ship"
    }
  ]
}
"""

# case -> (root, format, first version's text, last text, last Markdown, a diff line per side)
EXPECTED: dict[str, tuple[str | None, str, str, str, str, tuple[str, str]]] = {
    "prosemirror": (
        "prosemirror",
        "xml",
        "Notes\n\nHello world\n",
        PROSEMIRROR_TEXT,
        PROSEMIRROR_MD.format(language=""),
        ("-Hello world\n", "+Hello bold and em with code and a link\n"),
    ),
    "tiptap": (
        "default",
        "xml",
        "Notes\n\nHello world\n",
        PROSEMIRROR_TEXT,
        PROSEMIRROR_MD.format(language="python"),
        ("-Hello world\n", "+- two\n"),
    ),
    "quill": (
        "quill",
        "rich-text",
        "Shopping",
        QUILL_TEXT,
        QUILL_MD,
        ("-Shopping\n", "+Shopping\n"),
    ),
    "codemirror": (
        "codemirror",
        "text",
        'def greet(name):\n    return "hi " + name\n',
        CODE_TEXT,
        CODE_TEXT,
        ('-    return "hi " + name\n', '+    return "hello " + name\n'),
    ),
    "monaco": (
        "monaco",
        "text",
        'def greet(name):\n    return "hi " + name\n',
        CODE_TEXT,
        CODE_TEXT,
        ('-    return "hi " + name\n', '+print(greet("ada"))\n'),
    ),
    "json": (
        None,
        "json",
        '{\n  "board": {\n    "title": "Sprint 1"\n  },',
        JSON_TEXT,
        f"```json\n{JSON_TEXT}```\n",
        ('-      "title": "Fix bug"\n', '+    "owner": "ada",\n'),
    ),
}


@pytest.fixture(scope="module")
def cases() -> dict[str, Any]:
    node = require_node_deps()
    for package in ("y-prosemirror", "@tiptap/y-tiptap", "@tiptap/starter-kit"):
        if not (HERE / "node_modules" / package / "package.json").exists():
            pytest.fail(f"npm package {package!r} missing: run `npm ci` in {HERE}")
    out = subprocess.run(
        [node, str(HERE / "bindings.mjs")], cwd=HERE, capture_output=True, check=True, timeout=60
    )
    value: dict[str, Any] = json.loads(out.stdout)
    return value


async def logged(case: dict[str, Any], author: str = "ada") -> MemoryStore:
    """A store holding the case's updates as one log entry each, two minutes apart."""
    store = MemoryStore()
    await store.open()
    for index, update in enumerate(case["updates"]):
        at = 1_700_000_000.0 + 120 * index
        await store.append([NewEntry("doc", base64.b64decode(update), at, f"c{index}", author)])
    return store


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_binding_history_reads_as_a_person_expects(cases: dict[str, Any], name: str) -> None:
    root, root_format, first_text, text, markdown, (removed, added) = EXPECTED[name]
    case = cases[name]
    store = await logged(case)
    found = await history.versions(store, CONFIG, "doc")
    assert [v.id for v in found] == list(range(1, len(case["updates"]) + 1))

    first, _ = await history.text_at(store, CONFIG, "doc", At(version=1))
    assert first.startswith(first_text) and (first == first_text or name == "json")
    now, version = await history.text_at(store, CONFIG, "doc")
    assert now == text
    assert version is not None and version.size == len(text) == found[-1].size

    txt = await export(store, CONFIG, "doc", "txt")
    assert txt.body.decode() == text
    md = await export(store, CONFIG, "doc", "md")
    assert md.body.decode().split("---\n", 2)[2] == markdown
    as_json = json.loads((await export(store, CONFIG, "doc", "json")).body)
    assert (as_json["root"], as_json["root_format"]) == (root, root_format)
    assert (as_json["text"], as_json["markdown"]) == (text, markdown)

    diff, _ = await history.diff(store, CONFIG, "doc", At(version=1), None)
    assert diff.startswith(f"--- doc@1\n+++ doc@{found[-1].id}\n")
    assert removed in diff and added in diff

    spans, _ = await history.attribution(store, CONFIG, "doc")
    assert "".join(span.text for span in spans) == text
    assert {span.author for span in spans} <= {"ada"}


async def test_attribution_follows_authors_through_xml_and_json(cases: dict[str, Any]) -> None:
    for name, first_author_part in (("prosemirror", "Hello "), ("json", '"title": "Sprint 1"')):
        store = MemoryStore()
        await store.open()
        for index, update in enumerate(cases[name]["updates"]):
            at = 1_700_000_000.0 + 120 * index
            user = "ada" if index == 0 else "grace"
            await store.append([NewEntry("doc", base64.b64decode(update), at, "c", user)])
        spans, _ = await history.attribution(store, CONFIG, "doc")
        by = {span.author: span.text for span in spans}
        assert set(by) == {"ada", "grace"}
        ada = "".join(span.text for span in spans if span.author == "ada")
        assert first_author_part in ada
        assert "bold" not in ada and "Ship" not in ada


async def test_text_root_setting_forces_the_root(cases: dict[str, Any]) -> None:
    store = await logged(cases["prosemirror"])
    forced = CONFIG.replace(text_root="prosemirror")
    assert (await history.text_at(store, forced, "doc"))[0] == PROSEMIRROR_TEXT
    elsewhere = CONFIG.replace(text_root="text")  # a root this document does not have
    assert (await history.text_at(store, elsewhere, "doc"))[0] == ""
    both = await logged(cases["codemirror"])
    for update in cases["monaco"]["updates"]:
        await both.append([NewEntry("doc", base64.b64decode(update), 1_800_000_000.0, "m")])
    # Two text roots: the one a binding names first in PREFERRED_ROOTS, unless forced.
    assert (await history.text_at(both, CONFIG, "doc"))[0] == CODE_TEXT
    reading = json.loads((await export(both, CONFIG, "doc", "json")).body)
    assert reading["root"] == "codemirror"
    forced_json = json.loads(
        (await export(both, CONFIG.replace(text_root="monaco"), "doc", "json")).body
    )
    assert forced_json["root"] == "monaco"
