"""gunicorn's access log, with the project's ``gunicorn.conf.py``, cannot be forged from a
request: the logged path is percent-decoded, so control characters and quotes in it are escaped
(``\\xNN``, as nginx does) and one request stays one line."""
import http.client
from pathlib import Path

from django.conf import settings as django_settings

from tests.vocelio_webhooks.test_api_walk_fixes import serve_gunicorn

FORGED = '127.0.0.1 "POST /admin/login/ HTTP/1.1" 302 0 1ms'


def _get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _access_lines(log: str) -> list[str]:
    # Every line besides the access log's is gunicorn's error log ("[date] ...") or Django's JSON log ("{...}").
    return [line for line in log.split("\n") if line.strip() and not line.startswith(("[", "{"))]


def test_gunicorn_access_log_escapes_control_characters_and_quotes_in_the_path(transactional_db):
    # given a server started with the project's configuration
    log_path = Path(django_settings.VAR_DIR) / "test-gunicorn.log"
    with serve_gunicorn() as port:
        # when requests put a newline + forged line, ESC, NUL and a quote in the decoded path
        forged = _get(port, "/health%0a127.0.0.1%20%22POST%20/admin/login/%20HTTP/1.1%22%20302%200%201ms")
        control = _get(port, "/health%1b[31mred%00nul%5cx0a")
        normal = _get(port, "/health")
    log = log_path.read_bytes().decode("utf-8", errors="replace")

    # then each request is exactly one access-log line, with the characters escaped
    lines = _access_lines(log)
    assert (forged, control, normal) == (404, 404, 200)
    assert len(lines) == 3, log
    assert not any(line.startswith(FORGED) for line in lines), log
    assert lines[0].startswith('127.0.0.1 "GET /health\\x0a127.0.0.1 \\x22POST /admin/login/ HTTP/1.1\\x22 302 0 1ms '
                               'HTTP/1.1" 404 '), lines[0]
    assert lines[1].startswith('127.0.0.1 "GET /health\\x1b[31mred\\x00nul\\x5cx0a HTTP/1.1" 404 '), lines[1]
    assert "\x1b" not in log and "\x00" not in log
    assert lines[2].startswith('127.0.0.1 "GET /health HTTP/1.1" 200 '), lines[2]
