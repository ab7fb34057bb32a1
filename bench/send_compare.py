"""Our sender (``deliveries.sender.send``) against a plain ``requests.Session.post``, one request
at a time on one thread, to the bench receiver: CPU and wall time per request.

Both use ``requests``; ours adds the SSRF-guarded connection, the attempt deadline, header
checks and the bounded body read. Alternating rounds of ``--requests`` (4,000) each, ``--rounds``
(3) of each. A benchmark: nothing here asserts. Needs no database (it loads Django's settings for
the sender's configuration only).
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import run as bench  # sets the bench's environment defaults first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vocelio_webhooks.settings")
    import django

    django.setup()
    import requests

    from deliveries import sender
    from endpoints import network

    receiver, base = bench.start_receiver()
    body = b'{"payload": "' + b"a" * 1000 + b'"}'
    headers = {"Content-Type": "application/json", "webhook-id": "msg_1", "webhook-timestamp": "1700000000",
               "webhook-signature": "v1,c2lnbmF0dXJl"}
    policy = network.destination_policy(url=f"{base}/a", allowed_ip_ranges=[], production=False)
    count = args.requests

    def ours() -> None:
        for i in range(count):
            sender.send(method="POST", url=f"{base}/e{i % 10}", headers=headers, body=body, timeout_seconds=10,
                        policy=policy)

    def plain() -> None:
        session = requests.Session()
        for i in range(count):
            session.post(f"{base}/e{i % 10}", data=body, headers=headers, timeout=(5, 15),
                         allow_redirects=False).close()

    try:
        for _ in range(args.rounds):
            for name, run in (("our sender", ours), ("Session.post", plain)):
                cpu, wall = time.process_time(), time.perf_counter()
                run()
                print(f"{name:12s}: CPU {(time.process_time() - cpu) / count * 1000:.3f} ms, "
                      f"wall {(time.perf_counter() - wall) / count * 1000:.3f} ms per request", flush=True)
    finally:
        receiver.kill()


if __name__ == "__main__":
    main()
