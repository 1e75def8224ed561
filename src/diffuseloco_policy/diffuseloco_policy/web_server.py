"""One HTTP port for a one-page web app: the page at `/` and its WebSocket at `/ws` (the `websockets` package's
asyncio server, in a thread of its own so the ROS executor never waits on a browser).

No ROS here and no teleop rules: each connection gets an id, and a handler (the web teleop node) answers the
connection's messages and is asked for a state to push every `push_period` seconds. A WebSocket whose Origin is
another site is refused (a page on the internet opened on the operator's phone must not reach the robot through
the phone's browser); clients that send no Origin (scripts, tests) are let in, like the same-origin page.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Optional, Protocol, Union
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

PAGE_PATHS = ("/", "/index.html")
SOCKET_PATH = "/ws"
START_TIMEOUT_S = 10.0


class WebServerError(RuntimeError):
    """The server cannot start: no address named, a port in use, an address that is not this machine's."""


class SessionHandler(Protocol):
    """What the server asks of its owner; called from the server's thread."""

    def opened(self, client: int) -> list[str]:
        """A page connected: the messages to send it first."""

    def received(self, client: int, message: Union[str, bytes]) -> list[str]:
        """A message from a page: the replies to send it."""

    def closed(self, client: int) -> None:
        """A page disconnected (closed, lost, or the server stops)."""

    def pushed(self, client: int) -> str:
        """The state to push to a page now."""


def same_origin(headers: Headers) -> bool:
    """No Origin (not a browser), or an Origin whose host:port is the Host the request was sent to."""
    origin = headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == headers.get("Host", "").lower()


class PageServer:
    """Serves `page` and its WebSocket on host:port (port 0: any free one, see `port` after start)."""

    def __init__(self, page: bytes, host: str, port: int, handler: SessionHandler, push_period: float,
                 max_message_bytes: int = 4096) -> None:
        if not host.strip():
            raise WebServerError("no address to listen on: name one (0.0.0.0 for every interface, or one of this "
                                 "machine's addresses)")
        self.page, self.host, self.port = page, host.strip(), port
        self.handler, self.push_period, self.max_message_bytes = handler, push_period, max_message_bytes
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="web-server", daemon=True)
        self._server: Optional[Server] = None

    def start(self) -> int:
        """Listen; returns the port. A bind failure is a WebServerError naming the address."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        try:
            self._server = future.result(timeout=START_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            self.stop()
            raise WebServerError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop(self) -> None:
        if self._server is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=START_TIMEOUT_S)
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=2.0)

    # ----------------------------------------------------------------------------------------- internals
    async def _listen(self) -> Server:
        # The page's messages are tiny; a larger one is refused by the protocol layer before it is read.
        return await serve(self._session, self.host, self.port, process_request=self._http,
                           max_size=self.max_message_bytes, compression=None)

    async def _close(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    def _http(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        """Plain HTTP for the page; the handshake goes on (None) only at SOCKET_PATH and from the same origin."""
        path = urlsplit(request.path).path
        if path == SOCKET_PATH:
            if same_origin(request.headers):
                return None
            return connection.respond(403, "cross-origin WebSocket refused\n")
        if path in PAGE_PATHS:
            headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(self.page))),
                               ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
            return Response(200, "OK", headers, self.page)
        return connection.respond(404, "not found\n")

    async def _session(self, connection: ServerConnection) -> None:
        client = next(self._ids)
        pusher: Optional[asyncio.Task] = None
        try:
            for text in self.handler.opened(client):
                await connection.send(text)
            pusher = asyncio.create_task(self._push(connection, client))
            async for message in connection:
                for reply in self.handler.received(client, message):
                    await connection.send(reply)
        except ConnectionClosed:
            pass
        finally:
            if pusher is not None:
                pusher.cancel()
            self.handler.closed(client)

    async def _push(self, connection: ServerConnection, client: int) -> None:
        try:
            while True:
                await asyncio.sleep(self.push_period)
                await connection.send(self.handler.pushed(client))
        except ConnectionClosed:
            pass
