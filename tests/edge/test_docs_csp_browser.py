"""/docs under its Content-Security-Policy in a real headless Chromium: Swagger UI renders
(which fetches /openapi.json), its operations and the Authorize dialog open, and the browser
reports no CSP violation while doing so.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3 in,
fd 4 out, messages ended by NUL), so the test needs no extra package.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Server, launch, stop
from tests.conftest import IN_CI

# A browser and a server on a busy machine: more than the default two minutes.
pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
OPERATIONS = "document.querySelectorAll('.opblock').length"
OPENED = "document.querySelectorAll('.opblock.is-open').length"
TRY_OUT = "document.querySelectorAll('.execute').length"
DIALOG = "document.querySelectorAll('.modal-ux').length"


class DevTools:
    """A headless Chromium and the DevTools messages it sent."""

    def __init__(self, chromium: Path, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends Chromium expects on fd 3 and 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.process = subprocess.Popen(
            [
                str(chromium),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                # A tab opened over DevTools counts as hidden: keep its timers at full speed.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            pass_fds=(3, 4, to_chrome_r, from_chrome_w),
            preexec_fn=wire,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""

    def call(self, method: str, timeout: float = 90.0, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received in self._read(deadline - time.monotonic()):
                if received.get("id") == self._next_id:
                    assert "error" not in received, received
                    result: dict[str, Any] = received["result"]
                    return result
                self.events.append(received)
        raise TimeoutError(method)

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return answer["result"].get("value")

    def wait_for(self, expression: str, done: Callable[[Any], bool], timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if done(value) or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    def _read(self, timeout: float) -> list[dict[str, Any]]:
        ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, timeout))
        if not ready:
            return []
        chunk = os.read(self._from_chrome, 1 << 20)
        if not chunk:
            raise EOFError("chromium closed the DevTools pipe")
        self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        return [json.loads(m) for m in messages]

    def close(self) -> None:
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def csp_violations(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        params = event.get("params", {})
        if event.get("method") == "Log.entryAdded":
            text = params["entry"].get("text", "")
            if "Content Security Policy" in text:
                found.append(text)
        if (
            event.get("method") == "Audits.issueAdded"
            and params["issue"].get("code") == "ContentSecurityPolicyIssue"
        ):
            found.append(json.dumps(params["issue"]["details"])[:500])
    return found


@pytest.fixture(scope="module")
def chromium() -> Path:
    found = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    if found:
        return Path(found)
    if IN_CI:
        pytest.fail("chromium is required in CI for the /docs browser test", pytrace=False)
    pytest.skip("chromium is not installed")


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = launch(tmp_path_factory.mktemp("docs-csp"))
    yield server
    stop(server.process)


@pytest.fixture(scope="module")
def exercised_docs(
    chromium: Path, docs_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    browser = DevTools(chromium, tmp_path_factory.mktemp("chromium-csp-profile"))
    try:
        target = browser.call("Target.createTarget", url="about:blank")
        attached = browser.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        browser.session = attached["sessionId"]
        for domain in ("Log", "Runtime", "Page", "Audits"):
            browser.call(f"{domain}.enable")
        browser.call("Page.bringToFront")
        browser.call("Page.navigate", url=f"{docs_server.base_url}/docs")
        # One step at a time, each waited for from here: no timers inside the page.
        operations = browser.wait_for(OPERATIONS, lambda n: n > 0)
        browser.evaluate(
            "document.querySelectorAll('.opblock-summary-control').forEach(e => e.click())"
        )
        opened = browser.wait_for(OPENED, lambda n: n == operations)
        browser.evaluate("document.querySelectorAll('.try-out__btn').forEach(e => e.click())")
        browser.wait_for(TRY_OUT, lambda n: n > 0)
        browser.evaluate("document.querySelector('.authorize').click()")
        dialog = browser.wait_for(DIALOG, lambda n: n > 0)
        browser.evaluate("1")  # collect what arrived meanwhile
        return {"operations": operations, "opened": opened, "authorize": dialog}, browser.events
    finally:
        browser.close()


def test_docs_render_their_operations_under_the_policy(
    exercised_docs: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    outcome, _ = exercised_docs
    assert outcome["operations"] >= 15


def test_docs_operations_and_the_authorize_dialog_open_under_the_policy(
    exercised_docs: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    outcome, _ = exercised_docs
    assert outcome["opened"] == outcome["operations"]
    assert outcome["authorize"] == 1


def test_docs_cause_no_content_security_policy_violation(
    exercised_docs: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, events = exercised_docs
    assert events, "the browser reported nothing at all: the listener is not working"
    assert csp_violations(events) == []
