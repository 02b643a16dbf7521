"""bench query's load client: answers read by Content-Length over one keep-alive
connection, however the bytes arrive."""

from __future__ import annotations

import socket
import threading

import pytest

from bench.query import QueryServer, RawClient

SENT_PER_GET = [
    # Content-Length as the last header, the head split mid-line, and the next answer
    # already in the same send as this one's body.
    [
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-len",
        b"gth: 12\r\n\r\n",
        b'{"data": 1}\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\n\r\n{}',
    ],
    [],
    [b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope"],
]


def _serve(listener: socket.socket) -> None:
    connection, _ = listener.accept()
    received = b""
    with connection:
        for count, chunks in enumerate(SENT_PER_GET, 1):
            while received.count(b"\r\n\r\n") < count:  # GETs may come in one read
                received += connection.recv(4096)
            for chunk in chunks:
                connection.sendall(chunk)


def test_answers_are_cut_by_content_length_and_only_200_passes() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        server = threading.Thread(target=_serve, args=(listener,))
        server.start()
        query = QueryServer(f"http://127.0.0.1:{port}", "k")
        client = RawClient(query)
        try:
            assert client.get(query.request("/a")) == b'{"data": 1}\n'
            assert client.get(query.request("/b")) == b"{}"
            with pytest.raises(RuntimeError, match="answered 404"):
                client.get(query.request("/c"))
        finally:
            client.close()
            server.join(timeout=5)
    assert query.request("/a") == b"GET /a HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port + (
        b"Authorization: Bearer k\r\n\r\n"
    )
