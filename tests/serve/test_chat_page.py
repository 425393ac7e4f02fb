"""The chat page end to end: `xinstruct chat` serving the embedded model, driven in a real headless Chromium
(Debian's, through Playwright). It loads the page, sends messages, watches the answers stream in, compares two
models side by side, saves the conversation, and leaves a screenshot in build/screenshots/ (not committed).

Skips only when no Chromium is installed: `make test` installs Debian's where it can; XINSTRUCT_CHROMIUM names
another binary, XINSTRUCT_SCREENSHOTS another folder for the screenshot.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180.0  # a fresh machine converts the GGUF for transformers once (about 30 s)
ANSWER_TIMEOUT_MS = 180_000
# As root in a container Chromium needs --no-sandbox; the rest keeps it off the (closed) network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Records every text the last answer of each chat shows, as the page changes.
WATCH = """() => {
  window.__seen = {};
  for (const side of ['a', 'b']) {
    const chat = document.querySelector('#chat-' + side);
    if (!chat) continue;
    window.__seen[side] = [];
    new MutationObserver(() => {
      const bots = chat.querySelectorAll('[data-testid="bot"]');
      if (bots.length) window.__seen[side].push(bots[bots.length - 1].innerText);
    }).observe(chat, {subtree: true, childList: true, characterData: true});
  }
}"""


def chromium_path() -> str | None:
    env = os.environ.get("XINSTRUCT_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed: `apt-get install chromium` (which `make test` runs where it can), "
                    "or point XINSTRUCT_CHROMIUM at a Chromium binary")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChatServer:
    """`python -m xinstruct chat ...` on a free local port, until `stop()`."""

    def __init__(self, args: list[str], tmp: Path):
        self.port = _free_port()
        self.save = tmp / "conversations.jsonl"
        self.log = tmp / "chat.log"
        cmd = [sys.executable, "-m", "xinstruct", "chat", *args, "--port", str(self.port), "--save", str(self.save)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.wait_log("ready on", START_TIMEOUT)
        assert httpx.get(self.url, timeout=10).status_code == 200

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        """Until the server's output holds `text`; fails (and stops the server) if it exits or times out."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                pytest.fail(f"xinstruct chat exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"xinstruct chat did not log {text!r} within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.1)

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.save.read_text(encoding="utf-8").splitlines()]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def serve(tmp_path):
    servers: list[ChatServer] = []

    def start(*args: str) -> ChatServer:
        servers.append(ChatServer(list(args), tmp_path))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


def _send(page, text: str, sides: str) -> dict[str, list[str]]:
    """Type `text`, press Enter, wait until every side's answer is finished; returns what each side showed."""
    page.evaluate(WATCH)
    before = {s: page.locator(f"#chat-{s} [data-testid='bot']").count() for s in sides}
    box = page.locator("#msg textarea")
    box.fill(text)
    box.press("Enter")
    # this turn's answer is on the page and its status line (replaced when the turn starts) says it finished
    done = " && ".join(f"document.querySelectorAll('#chat-{s} [data-testid=\"bot\"]').length > {before[s]} && "
                       f"document.querySelector('#status-{s}').innerText.includes('tok/s')" for s in sides)
    page.wait_for_function(f"() => {done}", timeout=ANSWER_TIMEOUT_MS)
    return page.evaluate("window.__seen")


def _assert_streamed(seen: list[str], final: str) -> None:
    """The answer appeared in several growing steps before its final text."""
    shown = [s for s in dict.fromkeys(seen) if s.strip() and s.strip() != "Loading content"]
    partial = [s for s in shown if len(s.strip()) < len(final.strip())]
    assert len(partial) >= 2, f"the answer did not stream: {shown!r}"
    assert _norm(final).startswith(_norm(partial[0])[:8]), (partial[0], final)


def _last_answer(page, side: str) -> str:
    return page.locator(f"#chat-{side} [data-testid='bot']").last.inner_text()


def _settled_answer(page, side: str, quiet: float = 1.0, timeout: float = 15.0) -> str:
    """The last answer once it has not changed for `quiet` seconds."""
    text, since, deadline = _last_answer(page, side), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"the answer kept changing for {timeout:.0f} s after Stop"
        time.sleep(0.1)
        now = _last_answer(page, side)
        if now != text:
            text, since = now, time.monotonic()
    return text


def test_chat_page_streams_the_embedded_model_and_saves(browser, serve):
    server = serve("--model", "embedded", "--threads", "1", "--max-tokens", "64")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url)
    page.wait_for_selector("#msg textarea")
    assert "embedded" in page.locator("#chat-a").inner_text()  # the chat is labelled with the model
    assert page.locator("#chat-b").count() == 0
    page.locator("#lang input").click()
    page.get_by_role("option", name="Swahili (sw)").click()

    seen = _send(page, "Tell me about the city of Mombasa.", "a")
    answer = _last_answer(page, "a")
    _assert_streamed(seen["a"], answer)
    status = page.locator("#status-a").inner_text()
    assert "Swahili" in status and "tokens" in status  # the language check of the answer
    seen = _send(page, "And what food is it known for?", "a")
    _assert_streamed(seen["a"], _last_answer(page, "a"))
    assert page.locator("#chat-a [data-testid='bot']").count() == 2

    # Stop: the answer stops growing and the page takes the next message
    page.locator("#generation-settings").get_by_text("Generation").click()  # open the settings
    page.locator("#max-tokens input[type=number]").fill("400")
    page.locator("#max-tokens input[type=number]").press("Enter")
    page.locator("#msg textarea").fill("Write a very long story about a lion and a hare.")
    page.locator("#msg textarea").press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#chat-a [data-testid=\"bot\"]').length === 3 && "
                           "document.querySelectorAll('#chat-a [data-testid=\"bot\"]')[2].innerText.length > 20",
                           timeout=ANSWER_TIMEOUT_MS)
    page.locator("#stop").click()
    page.wait_for_function("() => document.querySelector('#status-a').innerText.includes('stopped')")
    server.wait_log("embedded stopped after")  # the server stopped decoding, not only the page
    cut = _settled_answer(page, "a")  # pieces already on their way may still land, then the page's last update
    time.sleep(1.5)
    assert _last_answer(page, "a") == cut  # nothing more arrives
    assert len(cut.split()) < 300
    seen = _send(page, "Thank you!", "a")
    assert page.locator("#chat-a [data-testid='bot']").count() == 4

    page.locator("#save").click()
    page.wait_for_function("() => document.querySelector('#save-status').innerText.includes('Saved')")
    [rec] = server.records()
    assert rec["model"] == "embedded" and rec["model_info"]["backend"] == "llama.cpp"
    assert rec["lang"] == "sw" and rec["messages"][0] == {"role": "system", "content": "Answer in Swahili."}
    assert [m["role"] for m in rec["messages"]] == ["system"] + ["user", "assistant"] * 4
    assert rec["messages"][3]["content"] == "And what food is it known for?"
    assert rec["messages"][5]["content"].strip()
    assert difflib.SequenceMatcher(None, _norm(cut), _norm(rec["messages"][6]["content"])).ratio() > 0.9  # as shown
    # what the page showed is what was saved (the page renders Markdown, so compare the words)
    assert difflib.SequenceMatcher(None, _norm(answer), _norm(rec["messages"][2]["content"])).ratio() > 0.9


def test_compare_mode_shows_two_streamed_answers_and_a_screenshot(browser, serve):
    server = serve("--model", "embedded", "--threads", "1", "--compare", "embedded", "--compare-backend",
                   "transformers", "--max-tokens", "48", "--lang", "sw")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server.url)
    page.wait_for_selector("#msg textarea")
    labels = [page.locator(f"#chat-{s} label").first.inner_text().strip() for s in "ab"]
    assert labels == ["embedded (llama.cpp)", "embedded (transformers)"]
    page.locator("#system textarea").fill("You are a helpful travel guide. Be brief.")

    seen = _send(page, "What should a visitor see in Zanzibar?", "ab")
    answers = {s: _last_answer(page, s) for s in "ab"}
    for s in "ab":
        assert answers[s].strip()
        _assert_streamed(seen[s], answers[s])
        assert "tok/s" in page.locator(f"#status-{s}").inner_text()

        assert "Swahili" in page.locator(f"#status-{s}").inner_text()  # checked against the chosen language

    page.locator("#save").click()
    page.wait_for_function("() => document.querySelector('#save-status').innerText.includes('Saved')")
    shots = Path(os.environ.get("XINSTRUCT_SCREENSHOTS") or REPO / "build" / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "chat-compare.png"), full_page=True)
    assert (shots / "chat-compare.png").stat().st_size > 10_000
    recs = server.records()
    assert [r["side"] for r in recs] == ["a", "b"] and recs[0]["comparison"] == recs[1]["comparison"]
    assert [r["model_info"]["backend"] for r in recs] == ["llama.cpp", "transformers"]
    for r, s in zip(recs, "ab", strict=True):
        assert r["lang"] == "sw"
        assert r["messages"][0] == {"role": "system",
                                    "content": "You are a helpful travel guide. Be brief.\n\nAnswer in Swahili."}
        assert r["messages"][1]["content"] == "What should a visitor see in Zanzibar?"
        assert difflib.SequenceMatcher(None, _norm(answers[s]), _norm(r["messages"][2]["content"])).ratio() > 0.9
