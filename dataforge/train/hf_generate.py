"""A transformers model (optionally with a peft adapter) behind the LLM engine's provider interface.

The engine sends requests one at a time from several workers; this provider gathers the requests
waiting at the same moment and answers them with one batched `generate` (left padding), so `k`
samples of a question cost one forward pass per token instead of `k`. Answers go to `llm_calls`
like any other provider's, keyed on a hash of the weights, so a rerun of an eval pays nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import time
from pathlib import Path
from typing import Any

from dataforge.llm.config import LLMConfig
from dataforge.llm.providers.base import Provider, ProviderError
from dataforge.llm.types import Completion, Request

PROVIDER = "transformers"


def weights_digest(paths: list[Path]) -> str:
    """sha256 over the weight files (safetensors / bin / gguf) under `paths`: the cache key of a model."""
    h = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".gguf", ".pt"))
        for f in files:
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


class TransformersProvider(Provider):
    """Batched sampling from an in-process transformers model; `sample_index` varies the seed."""

    name = PROVIDER

    def __init__(self, cfg: LLMConfig, model: Any, tokenizer: Any, *, digest: str, batch_size: int = 16):
        super().__init__(cfg)
        self.model = model
        self.tok = tokenizer
        self.digest = digest
        self.batch_size = batch_size
        self._pending: list[tuple[Request, asyncio.Future]] = []
        self._flush_scheduled = False
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataforge-hf")

    def request_extra(self) -> dict:
        return {"weights": self.digest}

    async def complete(self, request: Request) -> Completion:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._pending.append((request, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let every worker that is ready enqueue its request first
        pending, self._pending = self._pending, []
        self._flush_scheduled = False
        groups: dict[tuple, list[tuple[Request, asyncio.Future]]] = {}
        for r, f in pending:
            groups.setdefault((r.temperature, r.top_p, r.max_tokens, r.stop), []).append((r, f))
        loop = asyncio.get_running_loop()
        for items in groups.values():
            for s in range(0, len(items), self.batch_size):
                chunk = items[s:s + self.batch_size]
                try:
                    outs = await loop.run_in_executor(self._executor, self._generate, [r for r, _ in chunk])
                except Exception as e:  # a fault of the model run fails these requests, not the process
                    for _, f in chunk:
                        if not f.done():
                            f.set_exception(ProviderError(f"transformers: {type(e).__name__}: {e}"))
                    continue
                for (_, f), c in zip(chunk, outs):
                    if not f.done():
                        f.set_result(c)

    def _prompt_text(self, r: Request) -> str:
        if r.messages is not None:
            return self.tok.apply_chat_template([m.as_dict() for m in r.messages], tokenize=False,
                                                add_generation_prompt=True)
        return r.prompt or ""

    def _generate(self, requests: list[Request]) -> list[Completion]:
        import torch

        t0 = time.perf_counter()
        r0 = requests[0]
        texts = [self._prompt_text(r) for r in requests]
        self.tok.padding_side = "left"
        enc = self.tok(texts, return_tensors="pt", padding=True,
                       add_special_tokens=all(r.messages is None for r in requests))
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        seed = (r0.seed or 0) * 1_000_003 + sum(r.sample_index for r in requests)
        torch.manual_seed(seed)
        sample = r0.temperature > 0
        gen_kwargs: dict[str, Any] = dict(max_new_tokens=r0.max_tokens, do_sample=sample,
                                          pad_token_id=self.tok.pad_token_id)
        if sample:
            gen_kwargs.update(temperature=r0.temperature, top_p=r0.top_p, top_k=0)
        if r0.stop:
            gen_kwargs.update(stop_strings=list(r0.stop), tokenizer=self.tok)
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen_kwargs)
        width = enc["input_ids"].shape[1]
        eos = {self.tok.eos_token_id, self.tok.pad_token_id}
        ms = (time.perf_counter() - t0) * 1000 / len(requests)
        completions = []
        for i, r in enumerate(requests):
            new = out[i, width:].tolist()
            n = len(new)
            while n and new[n - 1] in eos:
                n -= 1
            text = self.tok.decode(new[:n], skip_special_tokens=True)
            finish = "length" if n >= r.max_tokens else "stop"
            for s in r.stop or ():
                if s in text:
                    text, finish = text[:text.index(s)], "stop"
            completions.append(Completion(text=text, finish_reason=finish,
                                          input_tokens=int(enc["attention_mask"][i].sum()), output_tokens=n,
                                          latency_ms=ms))
        return completions

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False)
