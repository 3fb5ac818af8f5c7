"""The Ray executor: row-wise steps run over slices of their input on Ray workers; the rest on the driver.

- A step whose kind declares itself row-wise (`Step.is_row_wise`) has its one input cut into
  contiguous slices, each sent as an Arrow table through the object store to a Ray task that runs the
  same `step.run` on it; the driver concatenates the results in input order. Every random choice a
  kind makes is keyed by (seed, step, row id), so a slice gives the rows the whole input would.
- Only the driver writes the catalog. Workers get a `WorkerStore` instead of the catalog handle: LLM
  answers they log go to a small actor (`CallSink`) that the driver drains every `DRAIN_S` seconds into
  `llm_calls`, so an answer is durable about a second after it arrives, even if the worker dies later.
  One sink serves every build of a driver process (an actor is a process: starting one took about a
  second), its bookkeeping kept per (build, step).
- Cache look-ups happen on the driver before dispatch (the kind's `requests_for` gives the requests):
  each slice takes its logged answers with it, so a rerun pays for nothing twice. A retried slice (its
  worker killed) also asks the sink for answers of its earlier attempt before calling again, and counts
  that attempt's calls against its share of `max_calls` and `budget_usd`.
- LLM limits stay global: a step's `max_concurrency`, `requests_per_minute`, `tokens_per_minute`,
  `max_calls` and the rest of `budget_usd` are divided among the slices that run at once. A slice that
  spent its share stops; the others go on with theirs. The driver tallies the calls it drains, so the
  step's summary line and its budget stop carry the whole build's numbers, once.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from dataforge.errors import BudgetExceeded, UserError
from dataforge.llm.engine import RunStats, budget_stop, limit_reached, summary_line
from dataforge.steps.base import RunContext, Step, StepError, StepResult

DRAIN_S = 0.25
"""How often the driver takes the LLM calls logged in the sink."""
HOLD_S = 0.4
"""How long the driver keeps calls it took from the sink before it commits them (at most): with a worker's
`WorkerStore.commit_delay_s` and `DRAIN_S` an answer is in the catalog within a second of arriving, in one
commit per two drains rather than one per drain (opening the catalog costs about 30 ms of CPU)."""
ROWS_PER_SLICE = 100_000
"""Slices of non-LLM steps: about this many rows each, and at least one per CPU of the cluster."""
SINK_PREFIX = "dataforge-sink:"
"""Name prefix of a driver's call sink actor (then the Ray job id), for `ray list actors`."""
TASK_RETRIES = 3
"""Ray retries a slice whose worker died this many times (one its memory monitor killed: as many times
as Ray's `task_oom_retries` says)."""
DRAIN_ON_FAILURE_S = 30.0
"""How long a build that stops on a slice's failure waits for the call sink's last answers."""


def _reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail at once (not after Ray's long connect timeout) when nothing listens at `address`."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379) or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}; start it with "
                        f"`ray start --head` on that machine, or check --ray-address") from None


class RayExecutor:
    """Runs row-wise steps on a Ray cluster (see the module docstring)."""

    name = "ray"

    def __init__(self, owns_runtime: bool):
        self._owns = owns_runtime

    @classmethod
    def connect(cls, address: str | None) -> "RayExecutor":
        """Join the cluster at `address` (HOST:PORT, ray://..., `auto`), or start a local one when None.
        A process that already called `ray.init` keeps its runtime."""
        import ray

        if ray.is_initialized():
            return cls(owns_runtime=False)
        if address and address not in ("auto", "local"):
            _reachable(address)
        # ray.init sets SIGTERM to sys.exit: a handler of the caller's (the CLI's, which closes a build as
        # interrupted with its LLM answers logged, exit 143) is put back, or SIGTERM would skip all that.
        main = threading.current_thread() is threading.main_thread()
        caller = signal.getsignal(signal.SIGTERM) if main else None
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"cannot connect to the Ray cluster at {address or 'a new local cluster'}: {e}") from None
        finally:
            if callable(caller):
                signal.signal(signal.SIGTERM, caller)
        return cls(owns_runtime=True)

    def close(self) -> None:
        import ray

        if self._owns:  # the sink goes with the runtime; a runtime the caller started keeps it for its next build
            _sinks.clear()
            ray.shutdown()

    # -- running a step -----------------------------------------------------------------
    def run_step(self, step: Step, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult | pl.DataFrame:
        if not self._distributable(step, inputs):
            return step.run(inputs, ctx)
        import ray

        df = inputs[0]
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        llm = step.uses_llm()
        if llm:
            cfg = step.effective_llm(ctx)  # type: ignore[attr-defined]
            n = max(1, min(cpus, cfg.max_concurrency, df.height))
        else:
            n = max(1, min(df.height, max(cpus, math.ceil(df.height / ROWS_PER_SLICE))))
        bounds = [(i * df.height // n, (i + 1) * df.height // n) for i in range(n)]
        slices = [df.slice(a, b - a) for a, b in bounds]

        sink = _sink() if llm else None
        key = f"{ctx.build_id}/{ctx.step_id}"
        if sink is not None:
            ray.get(sink.begin.remote(key, ctx.step_id))
        worker_step, shares, cached, tally = step, [None] * n, [{}] * n, None
        if llm:
            worker_step, shares, cached, hashes = self._llm_shares(step, slices, cfg, ctx, min(n, cpus))
            tally = _Tally(hashes)
        fields = dict(recipe_path=Path(ctx.recipe_path).resolve(), seed=ctx.seed,
                      catalog_path=Path(ctx.catalog_path).resolve() if ctx.catalog_path else None,
                      step_id=ctx.step_id, build_id=ctx.build_id, fingerprint=ctx.fingerprint,
                      input_ids=list(ctx.input_ids), llm_summary=False)
        task = ctx.progress.task(f"{ctx.step_id} on ray ({n} slices)", total=df.height) if ctx.progress else None
        refs = [run_slice.options(max_retries=TASK_RETRIES).remote(
                    worker_step, ray.put(part.to_arrow()), fields, shares[i] or ctx.llm,
                    None if sink is None else (sink, key), i, cached[i])
                for i, part in enumerate(slices)]
        try:
            done, stop = self._wait(refs, sink, key, ctx, task, [len(p) for p in slices], tally)
        except BaseException:
            for r in refs:
                ray.cancel(r, force=True)
            raise
        finally:
            if task is not None:
                task.close()
            if sink is not None:
                sink.end.remote(key)
            if tally is not None:
                tally.log(ctx)
        if stop is not None:
            raise tally.stopped(stop, cfg, ctx, min(n, cpus))  # type: ignore[union-attr]
        return _concat(done, ctx)

    @staticmethod
    def _distributable(step: Step, inputs: list[pl.DataFrame]) -> bool:
        if len(inputs) != 1 or inputs[0].height < 2 or not step.is_row_wise():
            return False
        if step.uses_llm():
            # The driver must know a slice's requests to look them up first; batch mode stays on the driver.
            return hasattr(step, "requests_for") and getattr(step, "mode", "online") == "online"
        return True

    @staticmethod
    def _llm_shares(step: Step, slices: list[pl.DataFrame], cfg: Any, ctx: RunContext, running: int):
        """Per slice: the step's limits divided among the `running` slices, and its logged answers."""
        worker_step = step.model_copy(update={"llm": None})  # the worker's ctx.llm is the merged config
        hashes = [[r.hash() for r in step.requests_for(part, cfg, ctx)] for part in slices]  # type: ignore[attr-defined]
        store = ctx.catalog
        answered = store.cached_llm_responses(sorted({h for hs in hashes for h in hs})) if store is not None else {}
        limited = cfg.max_calls is not None or cfg.budget_usd is not None
        calls, spent = store.llm_usage(ctx.build_id) if store is not None and limited else (0, 0.0)

        def split(total: float | None, i: int, integer: bool) -> Any:
            if total is None:
                return None
            if integer:
                return int(total) // running + (1 if i % running < int(total) % running else 0)
            return total / running

        shares = []
        for i in range(len(slices)):
            upd: dict[str, Any] = {"max_concurrency": max(1, split(cfg.max_concurrency, i, True))}
            if cfg.requests_per_minute:
                upd["requests_per_minute"] = split(cfg.requests_per_minute, i, False)
            if cfg.tokens_per_minute:
                upd["tokens_per_minute"] = split(cfg.tokens_per_minute, i, False)
            if cfg.max_calls is not None:
                upd["max_calls"] = calls + split(max(0, cfg.max_calls - calls), i, True)
            if cfg.budget_usd is not None:
                upd["budget_usd"] = spent + split(max(0.0, cfg.budget_usd - spent), i, False)
            shares.append(cfg.model_copy(update=upd))
        cached = [{h: answered[h] for h in hs if h in answered} for hs in hashes]
        # The worker reads the API key from the same variable; a worker on another machine may not have it.
        env = {cfg.api_key_env: os.environ[cfg.api_key_env]} \
            if getattr(cfg, "api_key_env", None) and cfg.api_key_env in os.environ else {}
        return worker_step, [(share, (calls, spent), env) for share in shares], cached, hashes

    @staticmethod
    def _wait(refs: list[Any], sink: Any, key: str, ctx: RunContext, task: Any, sizes: list[int],
              tally: "_Tally | None") -> tuple[list[dict[str, Any]], BudgetExceeded | None]:
        """Every slice's result, and the first budget stop of a slice (the others go on with their shares)."""
        import ray
        from ray.exceptions import (LocalRayletDiedError, NodeDiedError, ObjectLostError, OutOfMemoryError, RayTaskError,
                                    WorkerCrashedError)

        index = {r: i for i, r in enumerate(refs)}
        pending = list(refs)
        out: list[dict[str, Any] | None] = [None] * len(refs)

        held: list[dict[str, Any]] = []  # calls taken from the sink, not committed yet
        held_since = 0.0
        stop: BudgetExceeded | None = None

        def drain(last: bool = False, timeout: float | None = None) -> None:
            nonlocal held_since
            if sink is None or ctx.catalog is None:
                return
            rows = ray.get(sink.drain.remote(key), timeout=timeout)
            if tally is not None:
                tally.add(rows)
            if rows and not held:
                held_since = time.monotonic()
            held.extend(rows)
            # Commit now unless the held calls can wait for the next drain and still be committed in time.
            if held and (last or time.monotonic() + DRAIN_S - held_since >= HOLD_S):
                ctx.catalog.record_llm_calls(held)
                held.clear()

        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=DRAIN_S)
                drain()
                for r in ready:
                    try:
                        out[index[r]] = ray.get(r)
                    except RayTaskError as e:
                        cause = e.cause if isinstance(e.cause, BaseException) else None
                        if isinstance(cause, BudgetExceeded):  # this slice spent its share; the others go on
                            stop = stop or cause
                            continue
                        raise (cause or e) from None
                    except (WorkerCrashedError, OutOfMemoryError, NodeDiedError, LocalRayletDiedError,
                            ObjectLostError) as e:
                        raise _died(ctx.step_id, index[r], sizes, e) from None
                    if task is not None:
                        task.advance(sizes[index[r]])
        except BaseException:
            # A slice stopped (a budget, a fault) or the build was interrupted: the other slices go, and the
            # answers that reached the sink (or were taken from it) are committed, so none is paid twice.
            for r in refs:
                ray.cancel(r, force=True)
            try:  # bounded: with Ray's own processes gone (a lost node, its raylet dead) the sink may not answer
                drain(last=True, timeout=DRAIN_ON_FAILURE_S)
            except Exception:
                pass
            raise
        drain(last=True)
        return out, stop  # type: ignore[return-value]


def _died(step_id: str, i: int, sizes: list[int], e: BaseException) -> StepError:
    """The error of a slice Ray could not get through: its worker died on every try (killed, out of
    memory), or its node or input was lost. Ray's own text says only that a worker or an object is gone."""
    first = sum(sizes[:i])
    why = (str(e).strip().splitlines() or [""])[0]
    return StepError(step_id, None, (
        f"Ray could not run slice {i + 1:,} of {len(sizes):,} (input rows {first:,}-{first + sizes[i] - 1:,}): "
        f"its worker died on every retry, or its node or input was lost ({type(e).__name__}: {why}). A worker "
        "is killed when its machine runs out of memory (`dmesg`, Ray's memory monitor) or by `kill -9`; Ray "
        "keeps its logs (`ray logs`, /tmp/ray/session_latest/logs on that machine). The LLM answers received "
        "before are kept: building again goes on from them"))


def _concat(parts: list[dict[str, Any]], ctx: RunContext) -> StepResult:
    def cat(key: str) -> pl.DataFrame | None:
        frames = [pl.from_arrow(p[key]) for p in parts if p[key] is not None]
        frames = [f for f in frames if isinstance(f, pl.DataFrame)]
        if not frames:
            return None
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")

    notes: dict[str, Any] = {}
    for p in parts:
        for k, v in p["notes"].items():
            notes.setdefault(k, v)
    for line in dict.fromkeys(line for p in parts for line in p["log"]):  # a note every slice made, once
        ctx.log(line)
    df = cat("df")
    assert df is not None
    return StepResult(df=df, rejections=cat("rejections"), lineage=cat("lineage"), notes=notes)


class _Tally:
    """A distributed LLM step's calls, from the rows the driver drains: one summary line and one budget stop
    with the whole step's numbers, where each slice only knows its own."""

    def __init__(self, hashes: list[list[str]]):
        self.hashes = [h for part in hashes for h in part]
        self.cached: set[str] = set()
        self.ok: set[str] = set()
        self.failed: set[str] = set()
        self.retries = self.input_tokens = self.output_tokens = 0
        self.usd = 0.0

    def add(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            status, h = r["status"], r["request_hash"]
            if status == "cached":
                self.cached.add(h)
            elif status == "ok":
                self.ok.add(h)
                self.input_tokens += r["input_tokens"] or 0
                self.output_tokens += r["output_tokens"] or 0
                self.usd += r["cost_usd"] or 0.0
            elif status == "error":
                self.failed.add(h)
            elif status == "retry":
                self.retries += 1

    def unsent(self) -> list[str]:
        """The step's requests (repeats too) that no slice sent or found in the call log."""
        return [h for h in self.hashes if h not in self.ok and h not in self.failed and h not in self.cached]

    def stats(self) -> RunStats:
        called = self.ok | self.failed  # a retried slice takes its first attempt's answers as `cached`
        return RunStats(requests=len(self.hashes), cached=sum(1 for h in self.hashes if h in self.cached - called),
                        called=len(called), ok=len(self.ok), failed=len(self.failed - self.ok),
                        skipped=len(set(self.unsent())),
                        retries=self.retries, input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                        usd=self.usd)

    def log(self, ctx: RunContext) -> None:
        if self.ok or self.failed or self.cached:
            ctx.log(summary_line(ctx.step_id, self.stats()))

    def stopped(self, stop: BudgetExceeded, cfg: Any, ctx: RunContext, running: int) -> BudgetExceeded:
        """The build's budget stop: its limit, its calls and spend (from the catalog), the step's unsent requests."""
        calls, spent = ctx.catalog.llm_usage(ctx.build_id) if ctx.catalog is not None else \
            (len(self.ok | self.failed), self.usd)
        limit = "max_calls" if str(stop).startswith("llm.max_calls=") else "budget_usd"  # see `limit_reached`
        reason = limit_reached(cfg, limit, calls, spent)
        if limit == "max_calls" and calls < cfg.max_calls:  # a slice used its share, another needed less of its
            reason += f"; each of the {running} slices running at once may make an equal share"
        return budget_stop(reason, len(self.unsent()), len(self.hashes))


# -- the worker side ----------------------------------------------------------------------
class WorkerStore:
    """What an LLM step on a worker sees as its catalog: logged answers it was sent, a sink for new calls."""

    commit_delay_s = 0.2
    """The call log's most wait before it hands answers to the sink (an actor call: cheap, unlike a commit);
    the driver then commits them within `DRAIN_S` + `HOLD_S`."""

    def __init__(self, sink: Any, key: str, index: int, cached: dict[str, dict[str, Any]], usage: tuple[int, float]):
        self._sink = sink
        self._key = key
        self._index = index
        self._cached = cached
        self._usage = usage

    def cached_llm_responses(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        import ray

        found = {h: self._cached[h] for h in hashes if h in self._cached}
        missing = [h for h in hashes if h not in found]
        if missing:  # answers of an earlier attempt of this slice (a killed worker)
            found.update(ray.get(self._sink.answered.remote(self._key, missing)))
        return found

    def record_llm_calls(self, rows: Iterable[dict[str, Any]]) -> None:
        import ray

        rows = list(rows)
        if rows:
            ray.get(self._sink.put.remote(self._key, rows, self._index))

    def llm_usage(self, build_id: str) -> tuple[int, float]:
        """The build's usage when the slice was dispatched, plus what this slice's attempts logged since (a retry
        after a killed worker must not spend its share again)."""
        import ray

        calls, spent = ray.get(self._sink.usage.remote(self._key, self._index))
        return self._usage[0] + calls, self._usage[1] + spent

    def read_dataset(self, name: str, version: int | None = None) -> pl.DataFrame:
        raise RuntimeError("a step on a Ray worker cannot read the catalog; declare it not row-wise")

    def __getattr__(self, name: str) -> Any:  # the batch-API methods: batch mode runs on the driver
        raise RuntimeError(f"{name} is not available on a Ray worker")


class _StepCalls:
    """A running LLM step's calls in the sink: rows not yet drained, answers so far, worker pids, and per slice
    the requests its attempts sent and what they cost."""

    def __init__(self, step_id: str) -> None:
        self.step_id = step_id
        self.rows: list[dict[str, Any]] = []
        self.ok: dict[str, dict[str, Any]] = {}
        self.workers: dict[int, int] = {}
        self.sent: dict[int, set[str]] = {}
        self.spent: dict[int, float] = {}


class _CallSink:
    """Collects the LLM calls workers log until the driver drains them, and remembers each running step's
    answers. One per driver process, kept per key (`build id/step id`) from `begin` to `end`."""

    def __init__(self) -> None:
        self.steps: dict[str, _StepCalls] = {}
        self.latest: str | None = None

    def begin(self, key: str, step_id: str) -> None:
        self.steps[key] = _StepCalls(step_id)
        self.latest = key

    def end(self, key: str) -> None:
        self.steps.pop(key, None)

    def put(self, key: str, rows: list[dict[str, Any]], index: int) -> None:
        st = self.steps.get(key)
        if st is None:  # a cancelled slice reporting after its step ended
            return
        st.rows.extend(rows)
        for r in rows:
            if r.get("status") == "ok":
                st.ok[r["request_hash"]] = r
            if r.get("status") in ("ok", "error"):  # what `llm_usage` counts as a call
                st.sent.setdefault(index, set()).add(r["request_hash"])
            st.spent[index] = st.spent.get(index, 0.0) + (r.get("cost_usd") or 0.0)

    def usage(self, key: str, index: int) -> tuple[int, float]:
        """(requests sent, USD spent) by the attempts of one slice so far."""
        st = self.steps.get(key)
        return (len(st.sent.get(index, ())), st.spent.get(index, 0.0)) if st else (0, 0.0)

    def drain(self, key: str) -> list[dict[str, Any]]:
        st = self.steps.get(key)
        if st is None:
            return []
        rows, st.rows = st.rows, []
        return rows

    def answered(self, key: str, hashes: list[str]) -> dict[str, dict[str, Any]]:
        ok = self.steps[key].ok if key in self.steps else {}
        return {h: ok[h] for h in hashes if h in ok}

    def hello(self, key: str, index: int, pid: int) -> None:
        if key in self.steps:
            self.steps[key].workers[index] = pid

    def pids(self) -> tuple[str | None, dict[int, int]]:
        """The step begun last and, per slice index, the pid of the worker process running it (tests kill one)."""
        st = self.steps.get(self.latest) if self.latest else None
        return (st.step_id, dict(st.workers)) if st else (None, {})


def _slice(step: Step, table: Any, fields: dict[str, Any], llm: Any, sink: tuple[Any, str] | None, index: int,
           cached: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Run `step` on one slice (a Ray task); returns Arrow tables, notes and log lines."""
    import ray

    usage: tuple[int, float] = (0, 0.0)
    if isinstance(llm, tuple):
        llm, usage, env = llm
        os.environ.update(env)
    store = None
    if sink is not None:
        actor, key = sink
        ray.get(actor.hello.remote(key, index, os.getpid()))
        store = WorkerStore(actor, key, index, cached, usage)
    lines: list[str] = []
    ctx = RunContext(llm=llm, catalog=store, progress=None, log=lines.append, **fields)  # type: ignore[arg-type]
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    out = step.run([df], ctx)
    res = out if isinstance(out, StepResult) else StepResult(df=out)
    arrow = {k: (None if v is None else v.to_arrow())
             for k, v in (("df", res.df), ("rejections", res.rejections), ("lineage", res.lineage))}
    return {**arrow, "notes": dict(res.notes), "log": lines}


def _remote_functions():
    import ray

    return ray.remote(_CallSink), ray.remote(num_cpus=1)(_slice)


class _Lazy:
    """`ray.remote` wrappers made on first use, so importing this module does not need Ray."""

    def __init__(self, which: int):
        self._which = which

    def __getattr__(self, name: str) -> Any:
        return getattr(_remote_functions_cached()[self._which], name)

    def __call__(self) -> Any:
        return _remote_functions_cached()[self._which]


_cache: list[Any] = []


def _remote_functions_cached():
    if not _cache:
        _cache.extend(_remote_functions())
    return _cache


_sinks: dict[str, Any] = {}  # Ray job id -> this driver's call sink


def _sink() -> Any:
    """This driver's call sink actor, started on first use and reused by later builds in the same runtime."""
    import ray

    job = ray.get_runtime_context().get_job_id()
    if job not in _sinks:
        _sinks.clear()  # a sink of an earlier runtime (ray.shutdown, then ray.init) is gone with it
        _sinks[job] = _remote_functions_cached()[0].options(num_cpus=0, name=f"{SINK_PREFIX}{job}").remote()
    return _sinks[job]


run_slice = _Lazy(1)
