"""Fixtures for the browser tests: headless Chromium from Debian's ``chromium`` and
``chromium-driver`` packages driven by Selenium, the live server bound to 127.0.0.1, and a
folder for screenshots.

Without Chromium (or Selenium) the tests are skipped with the reason — unless
``VOCELIO_REQUIRE_SERVICES=1`` (CI), where a missing browser fails them: CI must not go green
without having driven the admin in a real browser.
"""
import os
import shutil
from pathlib import Path

import pytest

# pytest-django's live_server reads this when it starts (default "localhost"): our servers bind 127.0.0.1.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = os.environ.get("VOCELIO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("VOCELIO_CHROMEDRIVER", "/usr/bin/chromedriver")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} not found: apt-get install {package}"
    return None


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``VOCELIO_TEST_ARTIFACTS_DIR`` (default ``var/test-artifacts/browser``, outside the
    per-run folder, which is removed after a green run): screenshots of each step."""
    folder = Path(os.environ.get("VOCELIO_TEST_ARTIFACTS_DIR") or ROOT / "var" / "test-artifacts") / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (1400×1000) for the session; closed at the end."""
    reason = _missing()
    if reason:
        if os.environ.get("VOCELIO_REQUIRE_SERVICES") == "1":
            pytest.fail(f"VOCELIO_REQUIRE_SERVICES=1 but the browser test cannot run: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--force-device-scale-factor=1", "--lang=en-US",
                     "--disable-extensions", "--no-first-run", "--password-store=basic"):
        options.add_argument(argument)
    # A private profile per run: a shared ~/.config/chromium may be locked by another run.
    profile = Path(os.environ.get("VOCELIO_VAR_DIR", ROOT / "var")) / "chromium-profile"
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
