"""Servers for the backend tests: a real vLLM OpenAI-compatible server, and a fake one.

The real server proves the happy path (what vLLM really accepts and counts); the fake one,
on 127.0.0.1 with a bounded number of requests, plays the error paths a real server cannot
be made to take on demand (rate limits, refusals) and counts requests and concurrency.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vidcap.engines.openai_probe import PROBE_PROMPT


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VllmServer:
    """A vLLM server process on 127.0.0.1; ``url`` waits until it is healthy (it boots in the
    background meanwhile, e.g. while the in-process engine starts)."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log
        self._ready = False

    @property
    def url(self) -> str:
        if not self._ready:
            self._wait(timeout=240)
        return f"http://127.0.0.1:{self.port}/v1"

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self.process.poll() is not None:
                pytest.fail(f"vLLM server exited with {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not healthy after {timeout:g} s:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as answer:
                    self._ready = answer.status == 200
            except OSError:
                time.sleep(0.5)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    @contextmanager
    def explained(self) -> Iterator[None]:
        """Re-raise a failure with the tail of the server's log attached."""
        try:
            yield
        except Exception as exc:
            raise AssertionError(f"{exc}\n--- vLLM server log ({self.log}) ---\n{self.tail()}") from exc

    def stop(self) -> None:
        self.process.terminate()  # the API server shuts its engine processes down
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the session we started, nothing else
            self.process.wait(timeout=10)


def launch_vllm_server(
    model: Path, log: Path, *, trust_mm_kwargs: bool = True, names: tuple[str, ...] = ("tiny",)
) -> VllmServer:
    """Start ``vllm.entrypoints.openai.api_server`` on ``model`` (served under ``names``); do not wait.

    ``trust_mm_kwargs`` False starts it as plainly as hosted servers run: per-request video
    metadata refused, vLLM's own video defaults (1 fps, at most 32 frames)."""
    port = free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--served-model-name", *names,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", "4096",
        "--gpu-memory-utilization", "0.05", "--enforce-eager",
        # Random weights would pad JSON with whitespace until max_tokens; real models stop.
        "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
    ]  # fmt: skip
    if trust_mm_kwargs:
        command.append("--trust-request-mm-kwargs")
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "INFO"}
    with log.open("wb") as sink:
        # A session of its own: teardown can end the server's engine processes with it.
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return VllmServer(process, port, log)


# vLLM's own answer when the server was not started with --trust-request-mm-kwargs.
VLLM_REFUSAL = (
    "Per-request media_io_kwargs are disabled by default because they can change multimodal media "
    "loading resource usage. Start the server with --trust-request-mm-kwargs only when clients are trusted."
)


class FakeServer(ThreadingHTTPServer):
    """Answers by the request's prompt: ok*, flaky* (429 twice), busy (always 429), bad, refuse.

    What it takes, like the servers it stands for: ``takes`` the content part types it knows
    (``video_url``, ``video``: a DashScope-style frame list, ``image_url``); ``plain`` refuses
    per-request video metadata as vLLM does without ``--trust-request-mm-kwargs``, and then
    keeps at most ``num_frames`` frames of a ``video_url``. Its prompt token count is 11 plus
    one per frame it kept.
    """

    daemon_threads = True
    max_requests = 200  # bounded, whatever a test does

    def __init__(
        self,
        delay: float,
        takes: tuple[str, ...] = ("video_url", "video", "image_url"),
        plain: bool = False,
        num_frames: int | None = 32,
    ) -> None:
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.delay = delay
        self.takes, self.plain, self.num_frames = takes, plain, num_frames
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.total = 0
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.bodies: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    @property
    def captions(self) -> list[dict]:
        """The bodies of caption requests (those of the engine's start-up probes left out)."""
        return [b for b in self.bodies if _prompt(b) != PROBE_PROMPT]

    def refusal(self, body: dict) -> str | None:
        """Why this server refuses the body's form of video, or None when it takes it."""
        if self.plain and ("media_io_kwargs" in body or "mm_processor_kwargs" in body):
            return VLLM_REFUSAL
        for part in body["messages"][-1]["content"]:
            if part["type"] not in (*self.takes, "text"):
                return f"Unsupported chat content part type: {part['type']!r}"
        return None

    def frames_kept(self, body: dict) -> int:
        """Frames the model would see: a ``video_url`` past ``num_frames`` loses the rest (plain)."""
        kept = 0
        for part in body["messages"][-1]["content"]:
            if part["type"] == "video_url":
                count = part["video_url"]["url"].count(",")
                cap = self.num_frames if self.plain and self.num_frames else count
                kept += min(count, cap)
            elif part["type"] == "video":
                kept += len(part["video"])
            elif part["type"] == "image_url":
                kept += 1
        return kept


def _prompt(body: dict) -> str:
    return body["messages"][-1]["content"][-1]["text"]


class FakeHandler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path != "/v1/models":
            return self._send(404, {"detail": "Not Found"})
        model = {"id": "fake", "object": "model", "created": 0, "owned_by": "test", "max_model_len": 1234}
        return self._send(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = _prompt(body)
        fake = self.server
        with fake.lock:
            fake.total += 1
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            fake.arrivals[prompt].append(time.monotonic())
            fake.bodies.append(body)
            attempt, total = len(fake.arrivals[prompt]), fake.total
        try:
            time.sleep(fake.delay)
            if total > fake.max_requests:
                return self._send(503, {"error": {"message": "request budget spent"}})
            refusal = fake.refusal(body)
            if refusal is not None:
                error = {"message": refusal, "type": "BadRequestError", "param": None, "code": 400}
                return self._send(400, {"error": error})
            if (prompt.startswith("flaky") and attempt <= 2) or prompt == "busy":
                return self._send(
                    429, {"error": {"message": "rate limited", "type": "rate_limit", "code": 429}}
                )
            if prompt in ("bad", "refuse"):
                message = (
                    VLLM_REFUSAL if prompt == "refuse" else "This model's maximum context length is 1234"
                )
                error = {"message": message, "type": "BadRequestError", "param": None, "code": 400}
                return self._send(400, {"error": error})
            choices = [
                {"index": i, "message": {"role": "assistant", "content": f"caption {i} of {prompt}"},
                 "finish_reason": "stop"}
                for i in range(body.get("n", 1))
            ]  # fmt: skip
            prompt_tokens = 11 + fake.frames_kept(body)
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 3 * len(choices), "total_tokens": 0}
            return self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                                    "choices": choices, "usage": usage})  # fmt: skip
        finally:
            with fake.lock:
                fake.in_flight -= 1


@contextmanager
def fake_server(delay: float = 0.05, **takes: Any) -> Iterator[FakeServer]:
    """A ``FakeServer`` on a thread; ``takes``: its ``takes``, ``plain`` and ``num_frames``."""
    server = FakeServer(delay, **takes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
