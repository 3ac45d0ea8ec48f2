#!/usr/bin/env bash
# Source coverage of the native decoders reached by the fuzz corpora (clang only).
#
#   fuzz/coverage.sh [harness...]
#
# Builds each harness with -fprofile-instr-generate -fcoverage-mapping (no
# sanitizers), runs every input of fuzz/corpus-work/<harness>/ and of the seed
# corpus once, merges the profiles and prints llvm-cov's per-file and
# per-function summary for native/*.c. Output under fuzz/out/coverage/.
set -eu -o pipefail
ROOT=${FUZZ_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
FUZZ=$ROOT/fuzz
WORK=${FUZZ_WORK:-$FUZZ/corpus-work}
OUT=$FUZZ/out/coverage
HARNESSES=${*:-chunk pfor lut select}
LLVM_BIN=${LLVM_BIN:-$(dirname "$(readlink -f "$(command -v clang)")")}
PROFDATA=$LLVM_BIN/llvm-profdata
COV=$LLVM_BIN/llvm-cov
mkdir -p "$OUT"
rm -f "$OUT"/*.profraw
bins=()
for h in $HARNESSES; do
    bin=$OUT/fuzz_$h
    clang -std=c99 -O1 -g -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping \
        -I"$ROOT/native" "$FUZZ/fuzz_$h.c" "$ROOT"/native/*.c -o "$bin" -lm
    dirs=()
    for d in "$WORK/$h" "$WORK/seeds/$h"; do
        [ -d "$d" ] && dirs+=("$d")
    done
    LLVM_PROFILE_FILE="$OUT/$h.%p.profraw" "$bin" -runs=0 "${dirs[@]}" >"$OUT/$h.log" 2>&1
    bins+=("-object=$bin")
done
"$PROFDATA" merge -sparse "$OUT"/*.profraw -o "$OUT/all.profdata"
# The first binary is positional, the others go through -object.
first=${bins[0]#-object=}
"$COV" report "$first" "${bins[@]:1}" -instr-profile="$OUT/all.profdata" "$ROOT"/native/*.c |
    tee "$OUT/summary.txt"
"$COV" report -show-functions "$first" "${bins[@]:1}" -instr-profile="$OUT/all.profdata" \
    "$ROOT"/native/om_pfor_dec.c "$ROOT"/native/om_decode.c >"$OUT/functions.txt"
echo "per-function report: $OUT/functions.txt; line view: $COV show $first -instr-profile=$OUT/all.profdata" >&2
