"""Examples-proportional mixing rates with a per-source cap, and exact integer counts.

The formula (Raffel et al. 2020, T5 section 3.5.2; Flan 2022 uses the same with caps of
a few thousand to 30k examples per task):

    m_i = min(n_i, cap_i)                     capped size (cap_i = infinity when unset)
    r_i = w_i * m_i / sum_j (w_j * m_j)       rate (w_i = weight, default 1)

Counts for a requested `total` T (default: T = sum_i m_i, "all, capped"):

1. Water-filling: a source never gives more than m_i rows (no repetition). While some
   source's quota T * r_i (over the sources still open, with the T still unassigned) is
   >= m_i, it gets exactly m_i, leaves the pool, and T shrinks by m_i.
2. Largest remainder (Hamilton): each open source gets floor(q_i) of its exact quota q_i;
   the R = T - sum floor(q_i) rows left go one each to the R largest fractional parts,
   ties to the earlier source in the mixture file.

All arithmetic is exact (`fractions.Fraction`; a float weight is taken at its exact binary
value), so counts never depend on float rounding. With equal weights and no `total`,
count_i == m_i.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Allocation:
    """Capped sizes, rates and integer counts for each source, in mixture order."""

    capped: list[int]
    rates: list[Fraction]
    counts: list[int]

    @property
    def total(self) -> int:
        return sum(self.counts)


def capped_sizes(sizes: list[int], caps: list[int | None]) -> list[int]:
    """m_i = min(n_i, cap_i); a cap of None means no cap."""
    return [n if c is None else min(n, c) for n, c in zip(sizes, caps, strict=True)]


def mixing_rates(capped: list[int], weights: list[float] | None = None) -> list[Fraction]:
    """r_i = w_i * m_i / sum_j w_j * m_j, exactly; all zero when nothing is available."""
    ws = [Fraction(w) for w in (weights or [1] * len(capped))]
    mass = [w * m for w, m in zip(ws, capped, strict=True)]
    whole = sum(mass, Fraction(0))
    if whole == 0:
        return [Fraction(0)] * len(capped)
    return [x / whole for x in mass]


def allocate(sizes: list[int], caps: list[int | None], weights: list[float] | None = None,
             total: int | None = None) -> Allocation:
    """Integer counts per source for `total` rows (None: all, capped). See the module docstring.

    Raises `ValueError` when `total` exceeds the capped rows available.
    """
    capped = capped_sizes(sizes, caps)
    rates = mixing_rates(capped, weights)
    available = sum(capped)
    if total is None:
        total = available
    if total < 0:
        raise ValueError("total must be >= 0")
    if total > available:
        raise ValueError(f"total {total:,} exceeds the {available:,} rows available after caps")
    counts = [0] * len(capped)
    open_ = [i for i, m in enumerate(capped) if m > 0 and rates[i] > 0]
    left = total
    while True:  # water-filling: pin sources whose quota reaches their capped size
        mass = sum((rates[i] for i in open_), Fraction(0))
        full = [i for i in open_ if mass > 0 and left * rates[i] / mass >= capped[i]]
        if not full:
            break
        for i in full:
            counts[i] = capped[i]
            left -= capped[i]
        open_ = [i for i in open_ if i not in full]
    if open_ and left:
        mass = sum((rates[i] for i in open_), Fraction(0))
        quotas = {i: left * rates[i] / mass for i in open_}
        for i in open_:
            counts[i] = int(quotas[i])  # floor: quotas are non-negative
        rest = left - sum(counts[i] for i in open_)
        by_remainder = sorted(open_, key=lambda i: (-(quotas[i] - counts[i]), i))
        for i in by_remainder[:rest]:
            counts[i] += 1
    return Allocation(capped=capped, rates=rates, counts=counts)
