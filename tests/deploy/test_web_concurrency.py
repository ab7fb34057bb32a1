"""``WEB_CONCURRENCY`` / ``GUNICORN_THREADS`` size the web server however it is started: the
Procfile, ``docker-compose.yml`` and the ``Dockerfile`` start gunicorn with ``gunicorn.conf.py``
and no ``--workers``/``--threads`` flag (a flag wins over the config file). Proven with gunicorn's
own ``--print-config``, which resolves the configuration and exits without serving."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def _procfile() -> list[str]:
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    return shlex.split(line.removeprefix("web:"))


def _compose() -> list[str]:
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]["command"]
    script = command[-1] if isinstance(command, list) else command
    return shlex.split(re.search(r"exec (gunicorn .*)$", script.strip()).group(1))


def _dockerfile() -> list[str]:
    line = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    return json.loads(line.removeprefix("CMD "))


def _resolved(argv: list[str], env: dict[str, str]) -> dict[str, str]:
    assert Path(argv[0]).name == "gunicorn", argv
    base = {name: value for name, value in os.environ.items() if name not in ("WEB_CONCURRENCY", "GUNICORN_THREADS")}
    result = subprocess.run([GUNICORN, *argv[1:], "--print-config"], check=False, cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**base, **env})
    assert result.returncode == 0, result.stderr
    return dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, flags=re.MULTILINE))


@pytest.mark.parametrize("command", [_procfile, _compose, _dockerfile], ids=["Procfile", "compose", "Dockerfile"])
def test_web_command_sizes_gunicorn_from_the_environment(command):
    # given
    argv = command()

    # when
    overridden = _resolved(argv, {"WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "5"})
    default = _resolved(argv, {})

    # then
    assert (overridden["workers"], overridden["threads"]) == ("3", "5")
    assert (default["workers"], default["threads"]) == ("2", "4")
