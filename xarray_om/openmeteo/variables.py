"""Requested variable names -> the stored names (folders, arrays, files) that hold them.

Ensemble members are stored as ``<name>_memberNN`` next to (or instead of)
``<name>``; a requested ``<name>`` then stands for all of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .messages import short

_MEMBER_SUFFIX = re.compile(r"^(?P<base>.+)_member(?P<n>\d+)$")

#: ``[(member number, stored name)]`` of one variable's members.
Members = list[tuple[int, str]]
#: ``[(output name, None | members)]``: None means a single stored ``output name``.
Resolved = list[tuple[str, Members | None]]


def group_members(available: Iterable[str]) -> dict[str, Members]:
    """``{base: [(member number, stored name), ...]}`` for ``<base>_memberNN`` names.

    The plain ``<base>`` (when present next to member names) is member 0.
    """
    avail = set(available)
    groups: dict[str, Members] = {}
    for name in avail:
        m = _MEMBER_SUFFIX.match(name)
        if m:
            groups.setdefault(m.group("base"), []).append((int(m.group("n")), name))
    for base, lst in groups.items():
        if base in avail and all(n != 0 for n, _ in lst):
            lst.append((0, base))
        lst.sort()
    return groups


def resolve_variables(
    requested: list[str] | None, available: Sequence[str], where: str
) -> Resolved:
    """The stored names of each requested variable (None: every available one)."""
    groups = group_members(available)
    avail = set(available)
    if requested is None:
        member_names = {n for lst in groups.values() for _, n in lst}
        out: Resolved = [(base, groups[base]) for base in sorted(groups)]
        out += [(name, None) for name in sorted(avail - member_names)]
        return out
    out = []
    for name in requested:
        if name in groups:
            out.append((name, groups[name]))
        elif name in avail:
            out.append((name, None))
        else:
            raise FileNotFoundError(
                f"variable {name!r} not found in {where}; available: {short(sorted(avail))}"
            )
    return out


def stored_names(name: str, members: Members | None) -> list[tuple[int | None, str]]:
    """``[(member number or None, stored name)]`` holding variable ``name``."""
    return [(None, name)] if members is None else list(members)
