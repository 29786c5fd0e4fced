"""Drive a stock Yjs peer (tests/interop/peer.mjs) from pytest.

``NodePeer`` starts ``node peer.mjs <url> <doc>`` and exchanges one JSON line per
command with it, so a test says exactly what the stock client does and when.
``require_node_deps()`` skips a test when Node or the pinned npm packages are
missing, and fails it instead when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
PEER_SCRIPT = HERE / "peer.mjs"
REQUIRED_PACKAGES = ("yjs", "y-websocket", "ws")


def missing_or_fail(reason: str) -> None:
    """Skip with ``reason``, or fail when CI=true (CI must never skip silently)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: missing dependencies are failures)")
    pytest.skip(reason)


def require_node_deps() -> str:
    """The path of ``node``, once Node and tests/interop's npm packages are present."""
    node = shutil.which("node")
    if node is None:
        missing_or_fail("node is not installed")
        raise AssertionError("unreachable")
    for name in REQUIRED_PACKAGES:
        if not (HERE / "node_modules" / name / "package.json").exists():
            missing_or_fail(f"npm package {name!r} missing: run `npm ci` in {HERE}")
    return node


class NodePeerError(Exception):
    """The Node peer answered a command with an error (e.g. a wait timed out)."""


class NodePeer:
    """One stock ``WebsocketProvider`` in a Node process; use ``async with``."""

    def __init__(self, server_url: str, doc: str, params: dict[str, str] | None = None) -> None:
        self.server_url = server_url
        self.doc = doc
        #: The provider's ``params`` (query parameters of its URL, e.g. a token).
        self.params = params or {}
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count()

    async def __aenter__(self) -> NodePeer:
        node = require_node_deps()
        self._proc = await asyncio.create_subprocess_exec(
            node,
            str(PEER_SCRIPT),
            self.server_url,
            self.doc,
            json.dumps(self.params),
            cwd=HERE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(self.request("close"), 5)
            await asyncio.wait_for(proc.wait(), 5)
        except (TimeoutError, NodePeerError, ConnectionError):
            proc.kill()
            await proc.wait()

    async def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command and return its reply; raise NodePeerError on ``ok: false``."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        ident = next(self._ids)
        proc.stdin.write(json.dumps({"id": ident, "cmd": cmd, **args}).encode() + b"\n")
        # Node's own waits time out first; this bound only catches a wedged process.
        async with asyncio.timeout(float(args.get("timeout", 5000)) / 1000 + 10):
            await proc.stdin.drain()
            line = await proc.stdout.readline()
        if not line:
            raise ConnectionError(f"node peer exited (code {proc.returncode}) during {cmd!r}")
        reply: dict[str, Any] = json.loads(line)
        assert reply.get("id") == ident, reply
        if not reply["ok"]:
            raise NodePeerError(f"{cmd}: {reply['error']}")
        return reply

    async def wait_synced(self, seconds: float = 5.0) -> None:
        await self.request("wait_synced", timeout=seconds * 1000)

    async def insert(self, index: int, text: str) -> None:
        await self.request("insert", index=index, text=text)

    async def delete(self, index: int, length: int) -> None:
        await self.request("delete", index=index, length=length)

    async def type(self, text: str, interval_ms: float = 5) -> str:
        """Type ``text`` at the end, one character (one update) every ``interval_ms``."""
        seconds = len(text) * interval_ms / 1000
        reply = await self.request("type", text=text, interval=interval_ms, timeout=seconds * 1000)
        return str(reply["text"])

    async def text(self) -> str:
        return str((await self.request("text"))["text"])

    async def wait_text(self, text: str, seconds: float = 5.0) -> str:
        return str((await self.request("wait_text", text=text, timeout=seconds * 1000))["text"])

    async def wait_contains(self, part: str, seconds: float = 5.0) -> str:
        reply = await self.request("wait_text", contains=part, timeout=seconds * 1000)
        return str(reply["text"])

    async def closes(self) -> list[tuple[int, str]]:
        """Every close the peer's sockets saw, in order: (code, reason)."""
        return [(int(c), str(r)) for c, r in (await self.request("closes"))["closes"]]

    async def wait_close(self, code: int, count: int = 1, seconds: float = 5.0) -> None:
        """Wait until ``count`` of the peer's connections were closed with ``code``."""
        await self.request("wait_close", code=code, count=count, timeout=seconds * 1000)

    async def disconnect(self) -> None:
        """``provider.disconnect()``: close and stop reconnecting."""
        await self.request("disconnect")

    async def connect(self) -> None:
        """``provider.connect()``: connect again (and keep reconnecting)."""
        await self.request("connect")

    async def set_awareness(self, state: dict[str, Any] | None) -> None:
        await self.request("set_awareness", state=state)

    async def seen(self) -> tuple[list[int], list[str]]:
        """(message types received so far, every console.error / warn line logged)."""
        reply = await self.request("seen")
        return [int(t) for t in reply["types"]], [str(line) for line in reply["logged"]]

    async def connections(self) -> tuple[int, list[tuple[int, str]]]:
        """(WebSockets opened so far, ``(code, reason)`` of each that closed)."""
        reply = await self.request("seen")
        return int(reply["opens"]), [(int(c), str(r)) for c, r in reply["closes"]]

    async def awareness(self) -> tuple[int, dict[int, Any]]:
        """(own client id, every known state by client id)."""
        reply = await self.request("awareness")
        return int(reply["self"]), {int(k): v for k, v in reply["states"].items()}

    async def wait_awareness(self, key: str, value: Any, seconds: float = 5.0) -> dict[int, Any]:
        """Wait until another client's awareness state has ``state[key] == value``."""
        reply = await self.request("wait_awareness", key=key, value=value, timeout=seconds * 1000)
        return {int(k): v for k, v in reply["states"].items()}
