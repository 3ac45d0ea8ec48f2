#!/usr/bin/env bash
# Build the native extension with AddressSanitizer + UBSan into a temporary
# directory (the in-place xarray_om/_om_native*.so is left alone) and run the
# native codec tests against that build. Fails on any sanitizer report.
#
# Usage: native/sanitize.sh [extra pytest args]
# Env:   OM_SANITIZE_KEEP=1 keeps the temporary directory (printed at the end).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python}"

LIBASAN="$(gcc -print-file-name=libasan.so)"
if [[ "$LIBASAN" != /* || ! -e "$LIBASAN" ]]; then
    echo "sanitize.sh: libasan not found (gcc -print-file-name=libasan.so gave '$LIBASAN')" >&2
    exit 77
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/om-sanitize.XXXXXX")"
cleanup() {
    if [[ -n "${OM_SANITIZE_KEEP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# 1. Build out of tree.
(
    cd "$ROOT"
    OM_NATIVE_SANITIZE=1 "$PY" setup.py -q build_ext -j 2 \
        --build-lib "$TMP/lib" --build-temp "$TMP/build" >"$TMP/build.log" 2>&1
) || { cat "$TMP/build.log" >&2; echo "sanitize.sh: build failed" >&2; exit 1; }
SO="$(find "$TMP/lib" -name '_om_native*.so' | head -n 1)"
[[ -n "$SO" ]] || { echo "sanitize.sh: no extension built" >&2; exit 1; }

# 2. A private copy of the package holding the sanitized extension; it comes
#    first on sys.path (pytest runs from $TMP, so the checkout is not on it).
mkdir -p "$TMP/pkg"
cp -r "$ROOT/xarray_om" "$TMP/pkg/"
find "$TMP/pkg/xarray_om" \( -name '_om_native*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cp "$SO" "$TMP/pkg/xarray_om/"

# Hypothesis examples are scaled down (OM_TEST_SCALE, default 0.3): the
# instrumented build is several times slower and the point here is memory
# safety, which the full-size runs of the normal test session complement.
cat >"$TMP/pkg/om_asan_plugin.py" <<'PYEOF'
import os

from hypothesis import settings

_scale = float(os.environ.get("OM_TEST_SCALE", "1"))
_init = settings.__init__


def _scaled_init(self, parent=None, **kwargs):
    if "max_examples" in kwargs:
        kwargs["max_examples"] = max(5, int(kwargs["max_examples"] * _scale))
    _init(self, parent, **kwargs)


settings.__init__ = _scaled_init
settings.register_profile("om_asan", max_examples=max(5, int(100 * _scale)), deadline=None)
settings.load_profile("om_asan")
PYEOF

TESTS=("$ROOT/tests/test_native_decode.py")
[[ -f "$ROOT/tests/test_native_encode.py" ]] && TESTS+=("$ROOT/tests/test_native_encode.py")

# The interpreter must pick up this copy, not the checkout's build.
LOADED="$(cd "$TMP" && LD_PRELOAD="$LIBASAN" ASAN_OPTIONS=detect_leaks=0 \
    PYTHONPATH="$TMP/pkg${PYTHONPATH:+:$PYTHONPATH}" \
    "$PY" -c 'import xarray_om._om_native as m; print(m.__file__)')"
if [[ "$LOADED" != "$TMP/pkg/"* ]]; then
    echo "sanitize.sh: imported $LOADED instead of the sanitized build" >&2
    exit 1
fi

# 3. Run. Python itself leaks by design, so leak detection is off; UB aborts
#    (the build uses -fno-sanitize-recover=undefined).
cd "$TMP"
set +e
env LD_PRELOAD="$LIBASAN" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    PYTHONPATH="$TMP/pkg${PYTHONPATH:+:$PYTHONPATH}" \
    PYTHONDONTWRITEBYTECODE=1 PYTHONMALLOC=malloc \
    OM_TEST_SCALE="${OM_TEST_SCALE:-0.3}" \
    "$PY" -m pytest -q -p no:cacheprovider -p om_asan_plugin --rootdir "$ROOT" \
    -o addopts="" "${TESTS[@]}" "$@" 2>&1 | tee "$TMP/test.log"
rc=${PIPESTATUS[0]}
set -e

# Nothing may be reported, and the tests must have run and passed.
if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$TMP/test.log"; then
    echo "sanitize.sh: sanitizer report(s) found" >&2
    exit 1
fi
if ! grep -qE "[0-9]+ passed" "$TMP/test.log"; then
    echo "sanitize.sh: tests did not complete (rc=$rc)" >&2
    exit 1
fi
if [[ $rc -ne 0 ]]; then
    echo "sanitize.sh: tests failed (rc=$rc)" >&2
    exit "$rc"
fi
echo "sanitize.sh: clean"
