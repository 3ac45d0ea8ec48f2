"""Fuzzing of the native decoders, as part of the test suite.

``fuzz/run.sh`` builds the C harnesses (fuzz/fuzz_*.c) with AddressSanitizer and
UBSan (libFuzzer when clang is installed, else the portable fuzz/driver.c with
gcc) and fuzzes each for a short time from seeds made of the fixtures' chunks.
Any sanitizer report, crash, broken harness invariant or timeout fails the test.

Budget: ``XARRAY_OM_FUZZ_SECONDS`` per harness (default 8 s, 4 harnesses).
Long campaigns: see fuzz/README.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "fuzz" / "run.sh"
REGRESSIONS = Path(__file__).resolve().parent / "data" / "fuzz_regressions"
HARNESSES = ("chunk", "pfor", "lut", "select")
SECONDS = int(os.environ.get("XARRAY_OM_FUZZ_SECONDS", "8"))

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="the fuzz scripts need a POSIX shell"),
    pytest.mark.skipif(
        shutil.which("clang") is None and shutil.which("gcc") is None,
        reason="no C compiler (clang or gcc) to build the sanitizer harnesses",
    ),
]


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(RUN), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _results(stdout: str) -> dict[str, dict[str, str]]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            fields = dict(kv.split("=", 1) for kv in line.split()[1:])
            out[fields["harness"]] = fields
    return out


@pytest.fixture(scope="module")
def built() -> None:
    """Build once (cached in fuzz/out/ across runs; a cold build takes a minute or two)."""
    r = _run(["--build"], {}, timeout=900)
    assert r.returncode == 0, f"fuzz harness build failed:\n{r.stderr[-4000:]}"


def test_seed_corpus_passes_every_harness(built, tmp_path: Path) -> None:
    """Every seed (real fixture chunks, LUTs, whole arrays) satisfies the harness
    invariants: SIMD levels agree, cut inputs fail, lossless round trips hold,
    om_decode_select matches the per-chunk oracle."""
    seeds = tmp_path / "seeds"
    subprocess.run([sys.executable, str(ROOT / "fuzz" / "make_seeds.py"), str(seeds)], check=True)
    for h in HARNESSES:
        assert len(list((seeds / h).iterdir())) > 10, f"too few seeds for {h}"
    r = _run(["--replay", str(seeds)], {}, timeout=600)
    assert r.returncode == 0, f"seed replay found a problem:\n{r.stdout}\n{r.stderr[-6000:]}"
    res = _results(r.stdout)
    assert set(res) == set(HARNESSES), r.stdout
    assert all(v["findings"] == "0" for v in res.values()), r.stdout


def test_fuzz_regressions(built) -> None:
    """Minimized inputs of past findings (tests/data/fuzz_regressions/<harness>/)."""
    files = [p for p in REGRESSIONS.glob("*/*") if p.is_file()]
    if not files:
        pytest.skip("no fuzz findings recorded yet (tests/data/fuzz_regressions/ is empty)")
    r = _run(["--replay", str(REGRESSIONS)], {}, timeout=600)
    assert r.returncode == 0, f"a fuzz regression is back:\n{r.stdout}\n{r.stderr[-6000:]}"


def test_fuzz_short_campaign(built, tmp_path: Path) -> None:
    """A short fuzzing run of every harness finds nothing."""
    env = {"FUZZ_WORK": str(tmp_path / "work")}
    r = _run([str(SECONDS), *HARNESSES], env, timeout=SECONDS * len(HARNESSES) + 600)
    assert r.returncode == 0, f"fuzzing found a problem:\n{r.stdout}\n{r.stderr[-8000:]}"
    res = _results(r.stdout)
    assert set(res) == set(HARNESSES), r.stdout
    for h, v in res.items():
        assert v["findings"] == "0", r.stdout
        # The engine really ran: hundreds of executions per second even on a busy machine.
        assert int(v["execs"]) > 20 * SECONDS, f"{h}: only {v['execs']} executions\n{r.stderr}"
    print(re.sub(r"^(?!RESULT).*\n?", "", r.stdout, flags=re.M))
