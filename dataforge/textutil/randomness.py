"""Counter-based random numbers keyed by (seed, row key, purpose, counter).

Every random choice a transform makes for a row is a pure function of the recipe seed, the
row's id and what the number is for, so a row gets the same prompt wherever it sits in the
input and however the input is partitioned, and the work is vectorised (numpy, no per-row
Python). The generator is splitmix64's finaliser applied to a mix of the four inputs.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective, well-mixed map of uint64 -> uint64."""
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64, copy=True)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _const(text: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little"))


def row_keys(ids: pl.Series | list[str]) -> np.ndarray:
    """A uint64 key per row id: the 16 hex digits of dataforge ids read as a number, else a hash."""
    s = pl.Series(ids, dtype=pl.Utf8) if not isinstance(ids, pl.Series) else ids.cast(pl.Utf8)
    if s.len() == 0:
        return np.zeros(0, dtype=np.uint64)
    hexlike = s.str.contains(r"^[0-9a-f]{16}$").all()
    if hexlike:
        hi = s.str.slice(0, 8).str.to_integer(base=16).to_numpy().astype(np.uint64)
        lo = s.str.slice(8, 8).str.to_integer(base=16).to_numpy().astype(np.uint64)
        return (hi << np.uint64(32)) | lo
    return np.array([int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little")
                     for v in s.to_list()], dtype=np.uint64)


def bits(keys: np.ndarray, seed: int, purpose: str, counter: int | np.ndarray = 0) -> np.ndarray:
    """64 random bits per key for (seed, purpose, counter); `counter` may be an array broadcast with keys."""
    base = _mix(np.asarray([_const(f"{seed}:{purpose}")], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        c = np.asarray(counter, dtype=np.uint64)
        return _mix(_mix(keys ^ base) + (c + np.uint64(1)) * _GOLDEN)


def uniform(keys: np.ndarray, seed: int, purpose: str, counter: int | np.ndarray = 0) -> np.ndarray:
    """Floats in [0, 1), one per key (shape of keys broadcast with counter)."""
    return (bits(keys, seed, purpose, counter) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def integers(keys: np.ndarray, seed: int, purpose: str, high: int | np.ndarray,
             counter: int | np.ndarray = 0) -> np.ndarray:
    """Integers in [0, high) (high >= 1, may be an array), one per key."""
    u = uniform(keys, seed, purpose, counter)
    out = np.floor(u * np.asarray(high, dtype=np.float64)).astype(np.int64)
    return np.minimum(out, np.asarray(high, dtype=np.int64) - 1)
