"""gunicorn settings shared by the Procfile and docker-compose.

The access log leaves out the query string and the remote user: an API key sent by mistake as
``?api_key=`` or as a Basic-auth user name must never reach a log file.

Workers and threads (issue 7, measured on the 2-core machine with 50 closed-loop publish clients,
10 endpoints, /tmp load of bench/run.py's ``_api_load``; noisy, two rounds each): 2 workers x 4
threads 155-163 req/s; 2 x 8 122-127; 2 x 1 (sync, no keep-alive) 111-165; 4 x 2 81-133;
4 x 1 76-87. A publish is mostly CPU in Python with three short waits (PostgreSQL twice, Redis
once), so one process per core with a few threads to cover the waits is best; more processes
only add contention on two cores. ``WEB_CONCURRENCY`` / ``GUNICORN_THREADS`` override them for
bigger machines (rule of thumb: workers = cores). Command-line flags win over this file, so the
Procfile, docker-compose.yml and the Dockerfile pass no ``--workers``/``--threads``
(tests/deploy/test_web_concurrency.py).

Every string in the access log is escaped by ``EscapingLogger``: the path (``%(U)s``) is the
percent-decoded one, so ``/health%0a127.0.0.1 "POST /admin/login/ ..."`` would otherwise write a
second, forged line, without any key; ESC and NUL would reach a terminal or a log shipper raw.
"""
import os
import re

from gunicorn.glogging import Logger

# What nginx escapes in its access log (ngx_http_log_module, "escape=default"): '"', '\\', control
# characters and everything from DEL up, as \xNN. The backslash is escaped too, so a logged
# "\x0a" can only come from a real newline, never from a client who typed those four characters.
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


class EscapingLogger(Logger):
    """gunicorn's logger whose access-log atoms (path, method, headers, environ values: every
    string) have quotes, backslashes, control and non-ASCII characters escaped as ``\\xNN``
    (``\\uNNNN`` above Latin-1; WSGI strings are Latin-1, so that is for a header's atom only).
    One request is then one line, whatever its path or headers."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if isinstance(value, str) and _UNSAFE.search(value):
                atoms[key] = _UNSAFE.sub(_escape, value)
        return atoms


logger_class = EscapingLogger

accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
