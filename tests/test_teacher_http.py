"""The real HTTP teacher path: a llama.cpp OpenAI-compatible server on loopback, and stub servers
that misbehave (slow, rate limited, garbage)."""

import http.server
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from assistant.errors import TeacherUnavailable
from assistant.models import OpenAITeacher
from assistant.settings import packaged_student_gguf
from tests.conftest import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama_server():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_student_gguf()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2-local"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("llama.cpp server did not start")
    yield url
    proc.terminate()
    proc.wait(10)


def test_streams_from_a_real_openai_compatible_server(llama_server):
    teacher = OpenAITeacher(base_url=llama_server, api_key=None, model="smollm2-local", timeout=30, max_retries=0,
                            max_tokens=12, temperature=0)
    items = list(teacher.stream([{"role": "user", "content": "Say hello."}]))
    chunks, done = items[:-1], items[-1]
    assert len(chunks) > 1 and done.text == "".join(chunks)  # really streamed
    assert 0 < done.output_tokens <= 12 and done.input_tokens > 0
    assert done.ttft_ms is not None and done.finish_reason in ("stop", "length")


class Stub(http.server.BaseHTTPRequestHandler):
    mode = "garbage"
    calls = 0

    def do_POST(self):
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.mode == "slow":
            time.sleep(3)
        if self.mode == "429":
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "rate limited"}}')
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"data: this is not json\n\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Stub.calls = 0
    yield server
    server.shutdown()


@pytest.mark.parametrize("mode, message", [("slow", "timed out"), ("429", "rate limited"), ("garbage", "malformed|empty")])
def test_failures_become_teacher_unavailable(stub, mode, message):
    Stub.mode = mode
    teacher = OpenAITeacher(base_url=f"http://127.0.0.1:{stub.server_address[1]}/v1", api_key="k", model="m",
                            timeout=1.0, max_retries=1)
    with pytest.raises(TeacherUnavailable, match=message):
        teacher.complete([{"role": "user", "content": "hi"}])
    if mode == "429":
        assert Stub.calls == 2  # retried once, honouring Retry-After: 0
