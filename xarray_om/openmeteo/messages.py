"""How problems found while opening are reported."""

from __future__ import annotations

import sys
import warnings

_PACKAGE = __name__.rpartition(".")[0]


def warn(message: str) -> None:
    """A RuntimeWarning attributed to the caller of :func:`~xarray_om.open_openmeteo`.

    The call depth inside this package varies by layout, so the stack level
    is found by walking out of the package (as xarray's and pandas'
    ``find_stack_level`` do) rather than counted.
    """
    level, frame = 2, sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != _PACKAGE and not module.startswith(_PACKAGE + "."):
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, RuntimeWarning, stacklevel=level)


def short(names: list[str], limit: int = 40) -> str:
    """Names for a message, cut after ``limit``."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"
