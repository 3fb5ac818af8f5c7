"""Starting llama-cpp-python's OpenAI-compatible server on the bundled SmolLM2, for tests and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_server(n_ctx: int = 1024, timeout_s: float = 90.0) -> Iterator[str]:
    """Run `python -m llama_cpp.server` on 127.0.0.1; yield its base URL (ending in /v1); stop it after."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        import pytest

        pytest.skip("needs llama-cpp-python's server extra: pip install 'llama-cpp-python[server]'")
    from dataforge.llm.providers.local import bundled_model_path, default_threads

    port = free_port()
    errlog = tempfile.TemporaryFile()  # a pipe would fill up with the server's per-request logging and block it
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
                             "--n_threads", str(default_threads()), "--n_threads_batch", str(default_threads())],
                            stdout=subprocess.DEVNULL, stderr=errlog)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None:
                    errlog.seek(0)
                    raise RuntimeError("llama_cpp.server exited: " + errlog.read().decode()[-2000:])
                if time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not start in time")
                time.sleep(0.2)
        yield url + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        errlog.close()
