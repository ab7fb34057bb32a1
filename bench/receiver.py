"""A fast webhook receiver for the benchmarks: a raw asyncio HTTP/1.1 server on 127.0.0.1.

Run as a subprocess (``python -m bench.receiver``); it prints its port on the first line. Every
``POST``/``PUT``/``PATCH`` is answered ``200`` at once (keep-alive), except ``/hang`` which is never
answered and ``/too-large`` which answers ``413`` to a JSON array of more than 10 events. The first
arrival time of each (path, event id) is kept: the event id is ``X-Vocelio-Event-Id``, or each
element's ``event_id`` when the body is a JSON array (batch delivery); gzip bodies are decoded.
``GET /_stats`` returns ``{"count": n}``; ``GET /_dump`` the arrivals as ``[[path, event_id, t], ...]``;
``POST /_reset`` clears them. The standard library only, so it runs anywhere Python does.
"""
import asyncio
import gzip
import json
import sys
import time

ARRIVALS: dict[tuple[str, str], float] = {}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
TOO_LARGE = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"


def _json_response(payload) -> bytes:
    body = json.dumps(payload).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def _record(path: str, headers: dict[str, str], body: bytes, now: float) -> bytes:
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    if body[:1] == b"[":
        events = json.loads(body)
        if path == "/too-large" and len(events) > 10:
            return TOO_LARGE
        for event in events:
            ARRIVALS.setdefault((path, str(event.get("event_id"))), now)
        return OK
    ARRIVALS.setdefault((path, headers.get("x-vocelio-event-id", "")), now)
    return OK


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            now = time.time()
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length") or 0))
            if path == "/hang":
                await asyncio.sleep(3600)
                return
            if method == "GET" and path == "/_stats":
                writer.write(_json_response({"count": len(ARRIVALS)}))
            elif method == "GET" and path == "/_dump":
                writer.write(_json_response([[p, e, t] for (p, e), t in ARRIVALS.items()]))
            elif path == "/_reset":
                ARRIVALS.clear()
                writer.write(OK)
            else:
                writer.write(_record(path, headers, body, now))
            if writer.transport.get_write_buffer_size() > 65536:
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0,
                                        backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
