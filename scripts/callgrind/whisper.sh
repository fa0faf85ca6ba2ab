#!/usr/bin/env bash
# Instructions per 64 B WHISPER (or per transport message), per process, counted with callgrind.
#
#   bash scripts/callgrind/whisper.sh [node|zmtp|tcp] [BIN]
#
# Runs `zmesh-bench --scenario 1 --only IMPL` under callgrind twice (--count64 1000 and 200000,
# everything else tiny), subtracts, divides by the message difference: sender = the driver
# process, receiver = the --peer process. Deterministic, so valid on a busy machine, except for
# one thing: valgrind runs the program ~50x slower, so every time-based decision in it (the
# outbox's 5 us direct-write gap, timers) sees gaps 50x longer than natively. SLOWCLOCK=50
# (the default; 1 = off) preloads slowclock.c, which slows CLOCK_MONOTONIC by that factor so the
# program sees about the time gaps it sees natively. Output files in $OUT (default a temp dir).
set -euo pipefail
IMPL=${1:-node}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN=${2:-${CARGO_TARGET_DIR:-$ROOT/target}/release/zmesh-bench}
OUT=${OUT:-$(mktemp -d)}
SLOWCLOCK=${SLOWCLOCK:-50}
N1=1000 N2=200000
PRELOAD=()
if [ "$SLOWCLOCK" != 1 ]; then
    gcc -O2 -shared -fPIC -o "$OUT/slowclock.so" "$ROOT/scripts/callgrind/slowclock.c" -ldl
    PRELOAD=(env LD_PRELOAD="$OUT/slowclock.so" SLOWCLOCK="$SLOWCLOCK")
fi
for N in $N1 $N2; do
    "${PRELOAD[@]}" valgrind --tool=callgrind --trace-children=yes \
        --callgrind-out-file="$OUT/cg.$N.%p" "$BIN" --scenario 1 --only "$IMPL" \
        --count64 "$N" --count4k 100 --rtt-count 100 --rounds 1 >"$OUT/out.$N" 2>&1
done
python3 - "$OUT" $N1 $N2 <<'PY'
import glob, sys
d, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def totals(n):
    r = {}
    for f in glob.glob(f"{d}/cg.{n}.*"):
        cmd, t = "", 0
        for line in open(f):
            if line.startswith("cmd:"):
                cmd = line
            elif line.startswith("totals:"):
                t = int(line.split()[1])
        side = "receiver" if "--peer" in cmd else "sender"
        r[side] = r.get(side, 0) + t
    return r
a, b = totals(n1), totals(n2)
for side in ("sender", "receiver"):
    print(f"{side}: {(b[side] - a[side]) / (n2 - n1):.0f} instructions per message")
PY
echo "(callgrind files in $OUT)"
