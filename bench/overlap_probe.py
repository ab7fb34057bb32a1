"""How much one sending thread gains by overlapping requests to different receivers (write each
request of a window, then read the answers) instead of one request at a time, as the send lane
does today (``bench/HISTORY.md``, "Throughput work, part 6"). Plain ``http.client`` keep-alive
connections to the bench receiver, one per endpoint path, for both modes, so only the overlap differs; ``--window``
requests in flight (one per connection). For scale, the same requests one at a time through a
``requests.Session`` and through a ``urllib3.PoolManager`` (the layer under ``requests`` that
our SSRF guard and deadline are built on, ``endpoints/network/``). Prints CPU and wall time per
request, alternating the modes for ``--rounds`` rounds. A probe for a design decision, not a
sender: no SSRF guard, deadline or body bound. Nothing here asserts.
"""
import argparse
import http.client
import sys
import time
from pathlib import Path

import requests
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import run as bench  # sets the bench's environment defaults first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--window", type=int, default=10, help="connections (and requests in flight when overlapping)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    receiver, base = bench.start_receiver()
    port = int(base.rsplit(":", 1)[1])
    body = b'{"payload": "' + b"a" * 1000 + b'"}'
    headers = {"Content-Type": "application/json", "webhook-id": "msg_1", "webhook-timestamp": "1700000000",
               "webhook-signature": "v1,c2lnbmF0dXJl"}
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(args.window)]

    def one_at_a_time() -> None:
        for n in range(args.requests):
            conn = connections[n % args.window]
            conn.request("POST", f"/overlap{n % args.window}", body=body, headers=headers)
            conn.getresponse().read()

    session = requests.Session()

    def with_requests() -> None:  # the library the engine and the raw sender use, for scale
        for n in range(args.requests):
            session.post(f"{base}/overlap{n % args.window}", data=body, headers=headers, timeout=10).close()

    pool = urllib3.PoolManager(maxsize=args.window)

    def with_urllib3() -> None:  # the layer under requests, where the SSRF guard and deadline live
        for n in range(args.requests):
            pool.request("POST", f"{base}/overlap{n % args.window}", body=body, headers=headers, timeout=10,
                         retries=False, redirect=False)

    def overlapped() -> None:
        for start in range(0, args.requests, args.window):
            batch = connections[: min(args.window, args.requests - start)]
            for k, conn in enumerate(batch):
                conn.request("POST", f"/overlap{k}", body=body, headers=headers)
            for conn in batch:
                conn.getresponse().read()

    try:
        for _ in range(args.rounds):
            for name, run in (("requests", with_requests), ("urllib3", with_urllib3),
                              ("one at a time", one_at_a_time), ("overlapped", overlapped)):
                cpu, wall = time.process_time(), time.perf_counter()
                run()
                per = 1000 / args.requests
                print(f"{name:13s}: CPU {(time.process_time() - cpu) * per:.3f} ms, "
                      f"wall {(time.perf_counter() - wall) * per:.3f} ms per request", flush=True)
    finally:
        for conn in connections:
            conn.close()
        receiver.kill()


if __name__ == "__main__":
    main()
