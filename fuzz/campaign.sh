#!/usr/bin/env bash
# Long fuzzing campaign: the harnesses one after another (never in parallel, so
# a shared machine keeps its other cores), each for SECONDS.
#
#   nohup fuzz/campaign.sh 3600 chunk pfor lut select > /dev/null 2>&1 &
#
# Appends one line per harness to fuzz/out/campaigns.log:
#   <UTC date> <git commit> RESULT harness=... engine=... execs=... seconds=... findings=...
# and keeps each engine log as fuzz/out/campaign_<harness>_<date>.log.
# Stops at the first harness with a finding (exit status 1). Do not edit this
# file while a campaign runs (run.sh is snapshotted, this script is not).
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_EACH=${1:?usage: campaign.sh SECONDS [harness...]}
shift
HARNESSES=${*:-chunk pfor lut select}
mkdir -p "$ROOT/fuzz/out"
# bash reads scripts while running them: run a snapshot of run.sh, so that
# editing the tree during a campaign cannot derail it.
SNAP=$ROOT/fuzz/out/run.campaign.$$.sh
cp "$ROOT/fuzz/run.sh" "$SNAP"
trap 'rm -f "$SNAP"' EXIT
for h in $HARNESSES; do
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    out=$(FUZZ_ROOT=$ROOT bash "$SNAP" "$SECONDS_EACH" "$h" 2>"$ROOT/fuzz/out/campaign_${h}_$stamp.err")
    rc=$?
    cp "$ROOT/fuzz/out/fuzz_$h.log" "$ROOT/fuzz/out/campaign_${h}_$stamp.log" 2>/dev/null
    echo "$stamp $commit ${out:-RESULT harness=$h failed to run (status $rc)}" >>"$ROOT/fuzz/out/campaigns.log"
    [ $rc -eq 0 ] || exit 1
done
