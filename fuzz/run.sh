#!/usr/bin/env bash
# Build and run the fuzz harnesses of the native decoders.
#
#   fuzz/run.sh TIME [harness...]           fuzz each harness for TIME seconds
#   fuzz/run.sh --replay DIR [harness...]   run every file of DIR/<harness>/ once
#   fuzz/run.sh --build [harness...]        only build
#
# Harnesses: chunk pfor lut select (default: all). Engine: libFuzzer when clang
# is installed, else fuzz/driver.c built with gcc; force one with
# FUZZ_ENGINE=libfuzzer|driver. Other knobs: FUZZ_WORK (working corpus root,
# default fuzz/corpus-work), FUZZ_SEED (driver seed), FUZZ_EXTRA (extra engine
# arguments). Builds go to fuzz/out/<engine>/, findings to fuzz/out/findings/.
#
# Output: one line per harness
#   RESULT harness=H engine=E execs=N seconds=S findings=K
# and exit status 1 if any harness had a finding (crash, sanitizer report,
# broken invariant, timeout, excessive allocation), 2 on a build error.
set -u -o pipefail

ROOT=${FUZZ_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
FUZZ=$ROOT/fuzz
OUT=$FUZZ/out
WORK=${FUZZ_WORK:-$FUZZ/corpus-work}
ALL="chunk pfor lut select"

mode=fuzz
case "${1:-}" in
    --replay) mode=replay; REPLAY_DIR=${2:?usage: run.sh --replay DIR [harness...]}; shift 2 ;;
    --build) mode=build; shift ;;
    ''|-h|--help) sed -n '2,19p' "$0"; exit 2 ;;
    *) TIME=$1; shift ;;
esac
HARNESSES=${*:-$ALL}

engine=${FUZZ_ENGINE:-auto}
if [ "$engine" = auto ]; then
    if command -v clang >/dev/null 2>&1 && echo 'int main(){return 0;}' |
        clang -x c -fsanitize=fuzzer-no-link - -c -o /dev/null 2>/dev/null; then
        engine=libfuzzer
    else
        engine=driver
    fi
fi

if command -v llvm-symbolizer >/dev/null 2>&1; then
    export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer)}
fi
# Allocation limit: a decoder must never ask for more than this, whatever the bytes.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:max_allocation_size_mb=1024:allocator_may_return_null=0:handle_abort=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

BIN=$OUT/$engine
mkdir -p "$BIN" "$OUT/findings"
NATIVE_SRC=$(ls "$ROOT"/native/*.c)
COMMON="-std=c99 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -I$ROOT/native"

if [ "$engine" = libfuzzer ]; then
    CC_=clang
    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
    LIB_FLAGS="$SAN -fsanitize=fuzzer-no-link"
    HARNESS_FLAGS="$SAN -fsanitize=fuzzer-no-link"
    LINK_FLAGS="$SAN -fsanitize=fuzzer"
else
    CC_=${CC:-gcc}
    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
    COV=""
    # gcc's trace-pc coverage feeds the driver's corpus selection.
    echo 'void f(void){}' | $CC_ -x c -fsanitize-coverage=trace-pc - -c -o /dev/null 2>/dev/null &&
        COV="-fsanitize-coverage=trace-pc"
    LIB_FLAGS="$SAN $COV"
    HARNESS_FLAGS="$SAN $COV"
    LINK_FLAGS="$SAN"
fi

# $1 is stale when missing or older than any of the following files.
stale() {
    local target=$1
    shift
    [ -e "$target" ] || return 0
    local f
    for f in "$@"; do
        [ "$f" -nt "$target" ] && return 0
    done
    return 1
}

# Compile a source to an object if stale (headers count as dependencies).
compile() {
    local src=$1 obj=$2
    shift 2
    stale "$obj" "$src" "$ROOT"/native/*.h "$FUZZ"/*.h "$FUZZ/run.sh" || return 0
    # Unique temporaries + rename: concurrent runs and running campaigns never
    # see a half-written object or binary.
    $CC_ $COMMON "$@" -c "$src" -o "$obj.$$.tmp" && mv "$obj.$$.tmp" "$obj"
}

build() {
    mkdir -p "$BIN/obj"
    local objs="" src o pids=""
    # Native sources in parallel (2 at a time): they dominate the build time.
    for src in $NATIVE_SRC; do
        o="$BIN/obj/$(basename "$src" .c).o"
        objs="$objs $o"
        compile "$src" "$o" $LIB_FLAGS &
        pids="$pids $!"
        if [ "$(echo $pids | wc -w)" -ge 2 ]; then
            for p in $pids; do wait "$p" || return 2; done
            pids=""
        fi
    done
    for p in $pids; do wait "$p" || return 2; done
    if [ "$engine" = driver ]; then
        compile "$FUZZ/driver.c" "$BIN/obj/driver.o" $SAN -std=gnu99 -D_GNU_SOURCE || return 2
        objs="$objs $BIN/obj/driver.o"
    fi
    local h
    for h in $HARNESSES; do
        compile "$FUZZ/fuzz_$h.c" "$BIN/obj/fuzz_$h.o" $HARNESS_FLAGS || return 2
        # shellcheck disable=SC2086
        if stale "$BIN/fuzz_$h" "$BIN/obj/fuzz_$h.o" $objs; then
            echo "linking $engine fuzz_$h" >&2
            # shellcheck disable=SC2086
            $CC_ $LINK_FLAGS "$BIN/obj/fuzz_$h.o" $objs -o "$BIN/fuzz_$h.$$.tmp" -lm &&
                mv "$BIN/fuzz_$h.$$.tmp" "$BIN/fuzz_$h" || return 2
        fi
    done
}

for h in $HARNESSES; do
    [ -f "$FUZZ/fuzz_$h.c" ] || { echo "unknown harness $h (have: $ALL)" >&2; exit 2; }
done
build || { echo "BUILD FAILED ($engine)" >&2; exit 2; }
[ $mode = build ] && exit 0

status=0
if [ $mode = replay ]; then
    for h in $HARNESSES; do
        files=$(find "$REPLAY_DIR/$h" -maxdepth 1 -type f 2>/dev/null | sort)
        [ -n "$files" ] || continue
        n=$(echo "$files" | wc -l)
        log=$OUT/replay_$h.log
        if [ "$engine" = libfuzzer ]; then
            # shellcheck disable=SC2086
            "$BIN/fuzz_$h" -artifact_prefix="$OUT/findings/$h-" $files >"$log" 2>&1
        else
            # shellcheck disable=SC2086
            "$BIN/fuzz_$h" -replay -artifact "$OUT/findings" $files >"$log" 2>&1
        fi
        rc=$?
        f=0
        [ $rc -eq 0 ] || { f=1; status=1; tail -n 60 "$log" >&2; }
        echo "RESULT harness=$h engine=$engine mode=replay files=$n findings=$f"
    done
    exit $status
fi

# Seed corpora: chunk payloads of the shared fixtures, wrapped per harness.
SEEDS=$WORK/seeds
if [ ! -d "$SEEDS" ] || [ "$FUZZ/make_seeds.py" -nt "$SEEDS" ]; then
    python3 "$FUZZ/make_seeds.py" "$SEEDS" >&2 || echo "warning: no seed corpus (make_seeds.py failed)" >&2
fi

for h in $HARNESSES; do
    mkdir -p "$WORK/$h" "$SEEDS/$h"
    log=$OUT/fuzz_$h.log
    before=$(ls "$OUT/findings" | wc -l)
    start=$SECONDS
    if [ "$engine" = libfuzzer ]; then
        # shellcheck disable=SC2086
        "$BIN/fuzz_$h" -max_total_time="$TIME" -timeout=10 -rss_limit_mb=2048 \
            -malloc_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$OUT/findings/$h-" \
            ${FUZZ_EXTRA:-} "$WORK/$h" "$SEEDS/$h" >"$log" 2>&1
        rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    else
        seedarg=${FUZZ_SEED:+-seed $FUZZ_SEED}
        # shellcheck disable=SC2086
        "$BIN/fuzz_$h" -t "$TIME" -timeout 10 -artifact "$OUT/findings" $seedarg \
            -corpus_out "$WORK/$h" ${FUZZ_EXTRA:-} "$WORK/$h" "$SEEDS/$h" >"$log" 2>&1
        rc=$?
        execs=$(sed -n 's/^DRIVER DONE execs=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    fi
    secs=$((SECONDS - start))
    after=$(ls "$OUT/findings" | wc -l)
    found=$((after - before))
    if [ $rc -ne 0 ] || [ $found -ne 0 ]; then
        [ $found -eq 0 ] && found=1
        status=1
        tail -n 80 "$log" >&2
    fi
    printf 'RESULT harness=%s engine=%s execs=%s seconds=%s findings=%s\n' \
        "$h" "$engine" "${execs:-0}" "$secs" "$found"
done
exit $status
