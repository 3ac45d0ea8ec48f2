"""data/ layout: which file holds each time step.

Time is counted in global steps (Unix seconds / ``temporal_resolution_seconds``).
``chunk_<N>.om`` holds steps ``[N * chunk_time_length, (N + 1) * chunk_time_length)``;
``year_<YYYY>.om`` the steps of that year (from YYYY-01-01T00Z).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

from .paths import Folder
from .times import to_unix

_CHUNK, _YEAR = 1, 0  # priorities: chunk files (rewritten every run) win over yearly merges


@dataclass(frozen=True)
class Span:
    """Steps ``[start, stop)`` held by one file."""

    start: int
    stop: int
    path: str
    priority: int

    @property
    def length(self) -> int:
        return self.stop - self.start


#: ``(start, stop, one span or None per member folder)``: steps read from the same files.
Segment = tuple[int, int, tuple[Span | None, ...]]


def spans(folder: Folder, ntime: int | None, dt: int) -> list[Span]:
    """The spans of a folder's files (chunk files need ``ntime``, the chunk length)."""
    out = []
    if ntime is not None:
        for n, path in folder.chunks.items():
            out.append(Span(n * ntime, (n + 1) * ntime, path, _CHUNK))
    for y, path in folder.years.items():
        rng = _year_span(y, dt)
        if rng is not None:
            out.append(Span(rng[0], rng[1], path, _YEAR))
    return out


def _year_span(year: int, dt: int) -> tuple[int, int] | None:
    """Steps of ``year_YYYY.om``, None when the year does not start on a step."""
    a = to_unix(f"{year:04d}-01-01")
    b = to_unix(f"{year + 1:04d}-01-01")
    if a % dt or b % dt:
        return None
    return a // dt, b // dt


def segments(per_member: list[list[Span]], lo: int, hi: int) -> list[Segment]:
    """Split ``[lo, hi)`` into runs read from the same file per member (None: no file).

    Where files overlap, the higher priority (chunk files) wins. Adjacent
    runs from the same files are merged.
    """
    edges = {lo, hi}
    for member_spans in per_member:
        for sp in member_spans:
            if lo < sp.start < hi:
                edges.add(sp.start)
            if lo < sp.stop < hi:
                edges.add(sp.stop)
    # Spans of one priority never overlap each other: find the covering one by bisection.
    classes = []
    for member_spans in per_member:
        by_prio: dict[int, list[Span]] = {}
        for sp in member_spans:
            by_prio.setdefault(sp.priority, []).append(sp)
        lst = []
        for prio in sorted(by_prio, reverse=True):
            ordered = sorted(by_prio[prio], key=lambda sp: sp.start)
            lst.append((ordered, [sp.start for sp in ordered]))
        classes.append(lst)
    out: list[Segment] = []
    for a, b in itertools.pairwise(sorted(edges)):
        choice: list[Span | None] = []
        for lst in classes:
            best = None
            for ordered, starts in lst:  # highest priority first
                i = bisect.bisect_right(starts, a) - 1
                if i >= 0 and ordered[i].start <= a and b <= ordered[i].stop:
                    best = ordered[i]
                    break
            choice.append(best)
        ch = tuple(choice)
        if out and out[-1][2] == ch and out[-1][1] == a:
            out[-1] = (out[-1][0], b, ch)
        else:
            out.append((a, b, ch))
    return out
