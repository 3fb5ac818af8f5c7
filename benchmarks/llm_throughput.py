"""Side-by-side: dataforge's LLM engine vs a sequential loop over the `openai` SDK, and local tokens/s.

    .venv/bin/python benchmarks/llm_throughput.py            # 1,000 requests, concurrency 64
    .venv/bin/python benchmarks/llm_throughput.py --quick    # 300 requests

A loopback OpenAI-compatible server (an asyncio HTTP/1.1 server in its own process) answers every
chat completion after exactly 200 ms. dataforge's `run_requests` sends the requests at
`max_concurrency: 64`, with the whole engine in the path: request hashing, the cache lookup in the
catalog, rate-limit bookkeeping, and every answer committed to `llm_calls` in a DuckDB catalog.
The ideal is requests / 64 x 0.2 s; the target is at most 1.25x that. The reference is the plain
loop a script would write with the SDK (`client.chat.completions.create` one after another); it
runs on the first 50 requests and its time for all of them is extrapolated (it is linear: 0.2 s
plus overhead per request). A bare `asyncio.gather` over `AsyncOpenAI`'s typed `create` under a
semaphore shows what a script using the SDK's usual call gets on this machine. Engine and
gather runs are interleaved `--repeat` times and the best of each is reported, together with the
engine driving an in-process provider that just sleeps 200 ms (the engine's own overhead,
catalog logging included, without the SDK's and HTTP's CPU cost). Then the local
provider (the bundled SmolLM2-135M-Instruct on this CPU) generates a few answers and its output
tokens/s is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LATENCY_S = 0.2
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
}).encode()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(LATENCY_S)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                         + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}/v1"


class SleepProvider:
    """Stands in for the SDK and HTTP: answers every request after 200 ms, in-process."""

    def __new__(cls, cfg):
        from dataforge.llm.providers.base import Provider
        from dataforge.llm.types import Completion

        class _Sleep(Provider):
            async def complete(self, request):
                await asyncio.sleep(LATENCY_S)
                return Completion(text="ok", finish_reason="stop", input_tokens=10, output_tokens=1)

        return _Sleep(cfg)


def bench_engine(url: str, n: int, concurrency: int, in_process: bool = False) -> dict:
    from dataforge.catalog.handle import StepHandle
    from dataforge.catalog.query import run_select
    from dataforge.catalog.store import Catalog
    from dataforge.llm.config import LLMConfig
    from dataforge.llm.engine import run_requests_with_stats
    from dataforge.llm.types import Message, Request
    from dataforge.steps.base import RunContext

    cfg = LLMConfig(provider="openai", model="bench", base_url=url, max_concurrency=concurrency, max_tokens=8)
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(Path(tmp) / "bench.duckdb")
        ctx = RunContext(recipe_path=Path(tmp) / "r.yaml", seed=0, catalog=StepHandle(catalog), build_id="bench",
                         step_id="bench", log=lambda _m: None)
        reqs = [Request(provider="openai", model="bench", messages=(Message(role="user", content=f"q {i}"),),
                        max_tokens=8) for i in range(n)]
        t0 = time.perf_counter()
        results, stats = run_requests_with_stats(reqs, cfg, ctx,
                                                 provider=SleepProvider(cfg) if in_process else None)
        seconds = time.perf_counter() - t0
        logged = run_select(catalog.path, "select count(*) as n from llm_calls where status = 'ok'")["n"][0]
    assert stats.ok == n and logged == n, (stats, logged)
    return {"seconds": seconds, "logged": int(logged)}


def bench_gather(url: str, n: int, concurrency: int, how: str = "create", http: str = "httpx") -> dict:
    """The floor the SDK itself allows: bare `asyncio.gather` over `AsyncOpenAI` under a semaphore
    (no cache, no log, no retries, no limits). `how`: the typed `chat.completions.create`, or the
    generic `post` of a JSON body with the raw bytes back (what dataforge's provider calls). `http`: the
    SDK's default transport (`httpx`) or `aiohttp` (its `DefaultAioHttpClient`, what the provider uses)."""
    import openai

    async def run() -> float:
        extra = {"http_client": openai.DefaultAioHttpClient()} if http == "aiohttp" else {}
        client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0, **extra)
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            messages = [{"role": "user", "content": f"q {i}"}]
            async with sem:
                if how == "post":
                    await client.post("/chat/completions", cast_to=bytes,
                                      body={"model": "bench", "max_tokens": 8, "messages": messages})
                else:
                    await client.chat.completions.create(model="bench", max_tokens=8, messages=messages)

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(n)))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        await client.close()
        return seconds, cpu

    seconds, cpu = asyncio.run(run())
    return {"seconds": seconds, "cpu_s": cpu}


def bench_sequential(url: str, n: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0)
    t0 = time.perf_counter()
    for i in range(n):
        client.chat.completions.create(model="bench", messages=[{"role": "user", "content": f"q {i}"}], max_tokens=8)
    return {"seconds": time.perf_counter() - t0}


def bench_local(n: int, max_tokens: int) -> dict:
    from dataforge.llm.config import LLMConfig
    from dataforge.llm.engine import run_requests_with_stats
    from dataforge.llm.providers.local import default_threads
    from dataforge.llm.types import Message, Request
    from dataforge.steps.base import RunContext

    cfg = LLMConfig(max_tokens=max_tokens, temperature=0)
    ctx = RunContext(recipe_path=Path("r.yaml"), seed=0, log=lambda _m: None)
    topics = ["the moon", "bread", "rivers", "chess", "bees", "glass", "winter", "maps", "tea", "clocks"]
    reqs = [Request(provider="local", model=cfg.model, temperature=0, max_tokens=max_tokens,
                    messages=(Message(role="user", content=f"Write a short paragraph about {topics[i % 10]}."),))
            for i in range(n + 1)]
    run_requests_with_stats(reqs[:1], cfg, ctx)  # loads the model
    t0 = time.perf_counter()
    _, stats = run_requests_with_stats(reqs[1:], cfg, ctx)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "output_tokens": stats.output_tokens, "input_tokens": stats.input_tokens,
            "tokens_per_s": stats.output_tokens / seconds, "threads": default_threads()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--sequential-sample", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    n = 300 if args.quick else args.requests
    proc, url = start_server()
    try:
        bench_engine(url, 64, args.concurrency)  # warm-up: imports, connection pool
        engines, gathers, inproc = [], [], []
        for _ in range(args.repeat):  # interleaved, best of each: the machine is shared and noisy
            engines.append(bench_engine(url, n, args.concurrency)["seconds"])
            gathers.append(bench_gather(url, n, args.concurrency)["seconds"])
            inproc.append(bench_engine(url, n, args.concurrency, in_process=True)["seconds"])
        engine = {"seconds": min(engines), "logged": n}
        seq = bench_sequential(url, args.sequential_sample)
    finally:
        proc.terminate()
        proc.wait()
    ideal = n / args.concurrency * LATENCY_S
    seq_full = seq["seconds"] / args.sequential_sample * n
    local = bench_local(4 if args.quick else 8, 64)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "requests": n, "concurrency": args.concurrency, "latency_s": LATENCY_S,
        "ideal_s": round(ideal, 3), "engine_s": round(engine["seconds"], 3),
        "engine_vs_ideal": round(engine["seconds"] / ideal, 3),
        "engine_runs_s": [round(x, 3) for x in engines], "sdk_gather_runs_s": [round(x, 3) for x in gathers],
        "sdk_gather_s": round(min(gathers), 3), "sdk_gather_vs_ideal": round(min(gathers) / ideal, 3),
        "engine_in_process_runs_s": [round(x, 3) for x in inproc],
        "engine_in_process_s": round(min(inproc), 3), "engine_in_process_vs_ideal": round(min(inproc) / ideal, 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "sequential_sample": args.sequential_sample, "sequential_sample_s": round(seq["seconds"], 3),
        "sequential_extrapolated_s": round(seq_full, 1),
        "speedup_vs_sequential": round(seq_full / engine["seconds"], 1),
        "local_tokens_per_s": round(local["tokens_per_s"], 1), "local": local,
    }
    print(f"{n} requests, {LATENCY_S * 1000:.0f} ms each, concurrency {args.concurrency}")
    print(f"  ideal                      {ideal:8.2f} s")
    print(f"  (best of {args.repeat} interleaved runs; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores)")
    print(f"  dataforge run_requests     {engine['seconds']:8.2f} s  = {result['engine_vs_ideal']:.3f}x ideal "
          f"(target <= 1.25x), {engine['logged']} calls logged to the catalog")
    print(f"  bare SDK asyncio.gather    {min(gathers):8.2f} s  = {result['sdk_gather_vs_ideal']:.3f}x ideal "
          "(no cache, log, retries or limits: the SDK's own floor on this machine)")
    print(f"  dataforge, in-process 200 ms provider {min(inproc):5.2f} s  = "
          f"{result['engine_in_process_vs_ideal']:.3f}x ideal (the engine and its catalog log alone, no SDK/HTTP)")
    print(f"  sequential openai SDK loop {seq_full:8.1f} s  (measured on {args.sequential_sample} requests: "
          f"{seq['seconds']:.2f} s, extrapolated)  -> dataforge is {result['speedup_vs_sequential']}x faster")
    print(f"local provider (SmolLM2-135M-Instruct Q4_1, {local['threads']} thread(s)): "
          f"{local['output_tokens']} output tokens in {local['seconds']:.2f} s = {local['tokens_per_s']:.1f} tokens/s")
    out = Path(__file__).parent / "results" / "llm_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
