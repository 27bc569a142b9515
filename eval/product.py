"""Driving the product as its users do, for the benchmarks: `assistant serve` and other commands in subprocesses.

The benchmarks sit below the shells (they may not import the web server), so they run the `assistant` command
of this interpreter's environment, configured only through environment variables as README documents them.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from assistant.chat import content_text
from assistant.settings import Settings

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "assistant.shells.cli"]  # the `assistant` command of this interpreter's environment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(home: Path, **settings) -> dict[str, str]:
    """The environment of a product process: none of this process's application settings, state in `home`,
    the bench's defaults, then `settings` (environment variable names, as README's settings table lists)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ASSISTANT_", "OPENAI_")) and k not in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT")}
    env.update(ASSISTANT_HOME=str(home), ASSISTANT_SEED_SAMPLE="false", ASSISTANT_EMBEDDER="hashing",
               PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    env.update({k: str(v) for k, v in settings.items()})
    return env


def db_path(home: Path) -> Path:
    return Settings.from_env({"ASSISTANT_HOME": str(home)}).db_path


def cli(args: list[str], home: Path, **settings) -> tuple[subprocess.CompletedProcess, float]:
    """Run `assistant <args>` to the end; (the finished process, seconds it took)."""
    t0 = time.perf_counter()
    out = subprocess.run(CLI + args, cwd=REPO, env=child_env(home, **settings), capture_output=True, text=True,
                         errors="replace")
    return out, time.perf_counter() - t0


@dataclass
class Served:
    chat_url: str
    console_url: str
    settings: Settings  # what the served app read from its environment
    pid: int = 0  # the `assistant serve` process


def _wait_for_urls(proc: subprocess.Popen, log: Path, timeout: float) -> dict[str, str]:
    """The chat and console addresses `assistant serve` prints once it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        urls = dict(re.findall(r"^(chat|console): (http\S+)", log.read_text(errors="replace"), re.M))
        if "chat" in urls and "console" in urls:
            return urls
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"`assistant serve` exited with {proc.returncode}: {' | '.join(tail)}")
        time.sleep(0.2)
    raise RuntimeError(f"`assistant serve` printed no addresses in {timeout:g} s (see {log})")


@contextmanager
def served(home: Path, **settings) -> Iterator[Served]:
    """`assistant serve` in a subprocess, configured by `settings` (environment variables) and listening on a
    free port, until the block ends; its output goes to serve-<port>.log beside `home`."""
    port = free_port()
    env = child_env(home, **{"ASSISTANT_PORT": port, **settings})
    log = home.parent / f"serve-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(CLI + ["serve"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        urls = _wait_for_urls(proc, log, timeout=300)
        yield Served(urls["chat"], urls["console"], Settings.from_env(env), proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def reply_text(history) -> str:
    """The last message's text in a chat history as the chat's API returns it (a str or a list of parts)."""
    if not history:
        return ""
    last = history[-1]
    return content_text(last.get("content")) if isinstance(last, dict) else str(last)
