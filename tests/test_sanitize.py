"""The native codec tests pass under AddressSanitizer + UBSan (native/sanitize.sh).

The script builds a sanitized copy of the extension in a temporary directory and
runs tests/test_native_decode.py (and test_native_encode.py) against it in a
separate interpreter, so a memory error fails this test instead of crashing the
test session.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "native" / "sanitize.sh"


def _libasan() -> str | None:
    if shutil.which("gcc") is None:
        return None
    out = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return out if out.startswith("/") and Path(out).exists() else None


def test_native_codecs_under_asan_and_ubsan():
    if _libasan() is None:
        pytest.skip("libasan is not available (gcc -print-file-name=libasan.so)")
    proc = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    output = proc.stdout + proc.stderr
    if proc.returncode == 77:
        pytest.skip("libasan is not available")
    assert proc.returncode == 0 and "sanitize.sh: clean" in output, output[-6000:]
