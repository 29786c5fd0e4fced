"""TLS on the native listener: wss:// and https:// on one port, with a certificate made here."""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidMessage

from collab.cli import main as cli_main
from collab.client import connect
from collab.config import Config
from collab.server import serve
from tests.interop.node_peer import NodePeer
from tests.tls import make_certificate, trusting


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get("text", type=Text))


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


async def test_wss_and_https_share_the_port(config: Config, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    async with serve(config.replace(certfile=str(cert), keyfile=str(key))) as server:
        url = f"wss://127.0.0.1:{server.port}/notes"
        async with (
            connect(url, ssl=trusting(cert), saved_acks=True) as a,
            connect(url, ssl=trusting(cert)) as b,
        ):
            await a.wait_synced()
            await b.wait_synced()
            a.doc.get("text", type=Text).insert(0, "over TLS")
            await b.wait_for(lambda: text_of(b.doc) == "over TLS")
            await a.wait_saved()

        # The HTTP API on the same port, over https.
        def fetch() -> Any:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{server.port}/api/docs/notes/text", context=trusting(cert)
            ) as response:
                return response.read()

        body = await asyncio.to_thread(fetch)
        assert "over TLS" in body.decode()


async def test_a_client_that_does_not_trust_the_certificate_is_not_connected(
    config: Config, certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = certificate
    async with serve(config.replace(certfile=str(cert), keyfile=str(key))) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await ws_connect(f"wss://127.0.0.1:{server.port}/notes")  # the system's CAs
        # Plain ws:// to a TLS port gets no WebSocket either.
        with pytest.raises(InvalidMessage):  # the server answers in TLS records
            await ws_connect(f"ws://127.0.0.1:{server.port}/notes", open_timeout=5)
        # And the server still serves a trusting client afterwards.
        async with connect(f"wss://127.0.0.1:{server.port}/notes", ssl=trusting(cert)) as c:
            await c.wait_synced()
        # Keep-alive HTTPS clients that end their connections with a TLS close (the
        # second one's answer comes after the server has seen the first one's close).
        for _ in range(2):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=trusting(cert), server_hostname="127.0.0.1"
            )
            writer.write(b"GET /api/docs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await reader.readline()).startswith(b"HTTP/1.1 200 ")
            writer.close()
            await writer.wait_closed()
    # Refused handshakes and closes are the clients' business: asyncio warns of nothing.
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_a_stock_yjs_client_over_wss(
    config: Config, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    # Node trusts the test certificate through its documented variable.
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(cert))
    async with serve(config.replace(certfile=str(cert), keyfile=str(key))) as server:
        async with (
            NodePeer(f"wss://127.0.0.1:{server.port}", "notes") as node,
            connect(f"wss://127.0.0.1:{server.port}/notes", ssl=trusting(cert)) as python,
        ):
            await node.wait_synced()
            await python.wait_synced()
            await node.insert(0, "from Yjs")
            await python.wait_for(lambda: text_of(python.doc) == "from Yjs")
            python.doc.get("text", type=Text).insert(8, ", and back")
            await node.wait_text("from Yjs, and back")


def test_a_bad_certificate_stops_serve_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    for flags, expected in (
        (["--certfile", str(bogus)], "cannot use"),
        (["--certfile", str(tmp_path / "missing.pem")], "missing.pem"),
        (["--keyfile", str(bogus)], "--keyfile needs --certfile"),
    ):
        with pytest.raises(SystemExit) as info:
            cli_main(["serve", "--port", "0", "--db", db, *flags])
        assert info.value.code == 1
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
