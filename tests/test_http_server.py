"""HTTP on the editors' port, on both servers: keep-alive, methods, bodies, streams.

Every test runs against ``collab serve``'s listener and against the ASGI app
under uvicorn (the ``server`` fixture), through a real httpx client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pycrdt import Text

from collab.asgi import create_app
from collab.client import connect
from collab.config import Config
from collab.http.messages import HttpRequest, HttpResponse, json_response
from collab.http.router import Route, exact
from tests.servers import RunningServer, uvicorn_config


def base(server: RunningServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def router_of(server: RunningServer) -> object:
    runtime = getattr(server, "runtime", None) or server.app.runtime  # type: ignore[attr-defined]
    return runtime.router


async def test_300_keep_alive_requests_on_one_connection(server: RunningServer) -> None:
    local_ports: set[int] = set()
    async with httpx.AsyncClient(base_url=base(server)) as client:
        for _ in range(300):
            response = await client.get("/api/docs")
            assert response.status_code == 200
            assert response.json() == {"docs": []}
            stream = response.extensions["network_stream"]
            local_ports.add(stream.get_extra_info("client_addr")[1])
    assert len(local_ports) == 1  # every request rode the same TCP connection


async def test_methods_reach_the_router_and_unknown_ones_get_405(server: RunningServer) -> None:
    seen: list[tuple[str, bytes]] = []

    async def echo(request: HttpRequest) -> HttpResponse:
        seen.append((request.method, request.body))
        return json_response({"method": request.method, "length": len(request.body)})

    router_of(server).add(  # type: ignore[attr-defined]
        Route(exact("/echo"), frozenset({"GET", "POST", "DELETE"}), echo)
    )
    body = b"\x00\x01binary body\xff" * 1000
    async with httpx.AsyncClient(base_url=base(server)) as client:
        posted = await client.post("/echo", content=body)
        assert posted.json() == {"method": "POST", "length": len(body)}
        assert (await client.delete("/echo")).json()["method"] == "DELETE"
        assert seen == [("POST", body), ("DELETE", b"")]

        options = await client.options("/echo")
        assert options.status_code == 204
        assert options.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, POST"

        # What the websockets handshake hook answered with the document list and 200:
        for method in ("DELETE", "PATCH", "PUT"):
            refused = await client.request(method, "/api/docs")
            assert refused.status_code == 405, method
            assert refused.headers["allow"] == "GET, HEAD, OPTIONS"
            assert "not allowed" in refused.json()["error"]

        head = await client.head("/api/docs")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(b'{"docs": []}')

        missing = await client.get("/no/such/thing")
        assert missing.status_code == 404 and "error" in missing.json()


async def test_a_body_over_the_limit_gets_413(config: Config, serve_kind: object) -> None:
    async with serve_kind(config.replace(max_message_size=1000)) as server:  # type: ignore[operator]
        async with httpx.AsyncClient(base_url=base(server)) as client:
            response = await client.post("/api/docs", content=b"x" * 5000)
            assert response.status_code == 413
            assert "over 1000 bytes" in response.json()["error"]
            assert (await client.get("/api/docs")).status_code == 200  # the server carries on


def serve_stream(server: RunningServer, path: str, chunks: AsyncIterator[bytes]) -> None:
    """Answer ``GET path`` with an event stream of ``chunks``, through the server's router."""

    async def stream(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, content_type="text/event-stream", stream=chunks)

    router_of(server).add(  # type: ignore[attr-defined]
        Route(exact(path), frozenset({"GET"}), stream)
    )


async def test_streamed_responses_arrive_chunk_by_chunk(server: RunningServer) -> None:
    release = asyncio.Event()
    closed = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"data: first\n\n"
            await release.wait()
            yield b"data: second\n\n"
        finally:
            closed.set()

    serve_stream(server, "/stream", chunks())
    async with (
        httpx.AsyncClient(base_url=base(server)) as client,
        client.stream("GET", "/stream") as response,
    ):
        assert response.headers["content-type"] == "text/event-stream"
        parts = response.aiter_raw()
        assert await anext(parts) == b"data: first\n\n"  # before the stream ended
        release.set()
        assert await anext(parts) == b"data: second\n\n"
    await asyncio.wait_for(closed.wait(), 5)


async def test_a_client_leaving_a_stream_closes_it(server: RunningServer) -> None:
    closed = asyncio.Event()

    async def forever() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b": keepalive\n\n"
                await asyncio.sleep(0.05)
        finally:
            closed.set()

    serve_stream(server, "/forever", forever())
    async with (
        httpx.AsyncClient(base_url=base(server)) as client,
        client.stream("GET", "/forever") as response,
    ):
        await anext(response.aiter_raw())
    await asyncio.wait_for(closed.wait(), 10)


async def test_garbage_instead_of_http_gets_400_and_the_server_carries_on(
    server: RunningServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400")
    async with httpx.AsyncClient(base_url=base(server)) as client:
        assert (await client.get("/api/docs")).status_code == 200


@pytest.mark.parametrize("with_lifespan", [True, False])
async def test_fastapi_app_with_collab_mounted_under_a_prefix(
    config: Config, with_lifespan: bool
) -> None:
    collab_app = create_app(config)
    app = FastAPI(lifespan=collab_app.lifespan) if with_lifespan else FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.mount("/collab", collab_app)
    server = uvicorn.Server(uvicorn_config(collab_app))
    server.config.app = app
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/collab/team/notes", saved_acks=True) as editor:
            await editor.wait_synced()
            editor.doc.get("text", type=Text).insert(0, "mounted")
            await editor.wait_saved()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/hello")).json() == {"hello": "world"}
            docs = (await client.get("/collab/api/docs")).json()["docs"]
            assert [d["name"] for d in docs] == ["team/notes"]  # named below the mount
            text = await client.get("/collab/api/docs/team/notes/text")
            assert json.loads(text.content)["text"] == "mounted"
            page = await client.get("/collab/")
            assert page.status_code == 200 and b"collab" in page.content
    finally:
        server.should_exit = True
        await task
    if not with_lifespan:
        await collab_app.stop()  # the host app never ran collab's lifespan
