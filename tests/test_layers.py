"""The file tree's layers hold: no module imports a layer above its own.

Layers, bottom to top (docs/architecture.md draws them):

    base        config, errors, names
    wire        bytes <-> messages, sans I/O
    policy      tokens -> identity, origins, limits: pure (strings and a clock in)
    store       the update log and snapshots
    history     versions, exports (read-only; never a live room)
    core        rooms, sessions, the journal, the gate (never awaits the network)
    fanout      what joins processes (Redis): the only importer of redis
    integrations  webhooks: the only outbound HTTP of the server
    http        one router and request/response type
    transports  the only importers of websockets, h11 and ASGI servers
    top         runtime, server, workers, asgi, cli, flags, client: assembly and entry points

Each layer may import only the layers listed for it in ``ALLOWED``; third-party
network and database libraries only from the modules named in ``LIBRARIES``.
The imports are read with ``ast``, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "collab"

BASE = {"collab.config", "collab.errors", "collab.names"}
TOP = {
    "collab",
    "collab.__main__",
    "collab.runtime",
    "collab.server",
    "collab.asgi",
    "collab.cli",
    "collab.flags",
    "collab.client",
    "collab.workers",
}

ALLOWED: dict[str, set[str]] = {
    "base": {"base"},
    "wire": {"base", "wire"},
    "policy": {"base", "policy"},
    "store": {"base", "store"},
    "history": {"base", "wire", "store", "history"},
    "core": {"base", "wire", "policy", "store", "core"},
    "fanout": {"base", "wire", "policy", "store", "core", "fanout"},
    "integrations": {"base", "wire", "store", "history", "core", "integrations"},
    "http": {"base", "wire", "policy", "store", "history", "core", "http"},
    "transports": {
        "base",
        "wire",
        "policy",
        "store",
        "history",
        "core",
        "http",
        "transports",
        "top:runtime",
    },
    "top": {
        "base",
        "wire",
        "policy",
        "store",
        "history",
        "core",
        "fanout",
        "integrations",
        "http",
        "transports",
        "top",
    },
}

#: Libraries that only some modules may import (prefix match on the module name).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "websockets": ("collab.transports.", "collab.client"),
    "h11": ("collab.transports.",),
    "uvicorn": ("collab.transports.",),
    "starlette": ("collab.transports.",),
    "sqlalchemy": ("collab.store.",),
    "alembic": ("collab.store.",),
    "redis": ("collab.fanout.",),
    "jwt": ("collab.policy.",),
    "prometheus_client": ("collab.http.",),
    # Outbound HTTP: webhooks, and the client's one-shot edits.
    "urllib.request": ("collab.integrations.", "collab.client"),
    "http.client": ("collab.integrations.",),
    "httpx": ("collab.integrations.",),
    "aiohttp": ("collab.integrations.",),
}


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    if module in TOP:
        return "top"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ALLOWED:
        return parts[1]
    raise AssertionError(f"{module} is in no layer: add it to tests/test_layers.py")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = module.split(".")[: -node.level or None]
                names.append(".".join([*base, node.module or ""]).rstrip("."))
            elif node.module is not None:
                names.append(node.module)
                # `from collab import history` imports the module collab.history
                names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def violations(module: str, path: Path, known: set[str]) -> list[str]:
    found = []
    own = layer(module)
    for name in imports(module, path):
        if name.split(".")[0] == "collab":
            if name not in known:
                continue  # `from collab.x import Name`: the module itself is checked
            target = layer(name)
            allowed = ALLOWED[own]
            if target == "top" and f"top:{name.split('.')[-1]}" in allowed:
                continue
            if target not in allowed:
                found.append(f"{module} ({own}) imports {name} ({target})")
        else:
            for library, owners in LIBRARIES.items():
                if name != library and not name.startswith(library + "."):
                    continue
                if not module.startswith(owners):
                    found.append(f"{module} imports {library}, which only {owners} may import")
    return found


def test_every_module_is_in_a_layer() -> None:
    for module in modules():
        layer(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    known = set(modules())
    problems = [p for m, path in modules().items() for p in violations(m, path, known)]
    assert problems == []


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        ("collab.core.room", "from collab.transports import listener", "(transports)"),
        ("collab.store.sql", "from collab.core.rooms import Rooms", "(core)"),
        ("collab.wire.protocol", "import collab.http.router", "(http)"),
        ("collab.core.session", "import websockets", "only"),
        ("collab.core.journal", "import urllib.request", "only"),
        ("collab.http.api", "from urllib.request import urlopen", "only"),
        ("collab.integrations.webhooks", "from collab.http import router", "(http)"),
        ("collab.history.versions", "from collab.core import room", "(core)"),
    ],
)
def test_an_upward_import_is_caught(
    tmp_path: Path, module: str, source: str, complaint: str
) -> None:
    path = tmp_path / "module.py"
    path.write_text(source + "\n")
    problems = violations(module, path, set(modules()))
    assert problems and all(complaint in problem for problem in problems)
