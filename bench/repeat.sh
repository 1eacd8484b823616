#!/usr/bin/env bash
# Runs a release-built benchmark REPS times (default 5), each run in a
# network namespace of its own, and aggregates its BENCH lines through
# bench/stats.py. Used by scripts/run-bench.sh,
# scripts/run-bench-provisioning.sh and scripts/run-bench-cni.sh.
# Usage: bench/repeat.sh "PRODUCT..." [ARGS...]: builds every product in
# release; the last is the benchmark, run with ARGS. With
# BASELINE_TREE=/path/to/another/checkout each repetition also runs that
# checkout's release build of the benchmark (built there beforehand; run
# from there, so that it uses its own binaries and BPF objects), the two
# taking turns at going first, and every figure gets vs_base= (current over
# base, per repetition, then median and min..max).
set -euo pipefail
cd "$(dirname "$0")/.."
PRODUCTS=$1
shift
for p in $PRODUCTS; do swift build -c release --product "$p"; done
bin=$(swift build -c release --show-bin-path)/${PRODUCTS##* }
product=$(basename "$bin")
REPS=${REPS:-5}
BASELINE_TREE=${BASELINE_TREE:-}
if [ -n "$BASELINE_TREE" ]; then
	BASELINE_TREE=$(cd "$BASELINE_TREE" && pwd)
	[ -x "$BASELINE_TREE/.build/release/$product" ] || {
		echo "$0: no $BASELINE_TREE/.build/release/$product: build it there first (swift build -c release for: $PRODUCTS)" >&2
		exit 1
	}
fi
samples=$(mktemp)
trap 'rm -f "$samples"' EXIT
failed=0
for (( r = 1; r <= REPS; r++ )); do
	order=(current)
	[ -z "$BASELINE_TREE" ] || { (( r % 2 )) && order=(current base) || order=(base current); }
	for t in "${order[@]}"; do
		dir=$PWD run=$bin tag=""
		[ "$t" = current ] || { dir=$BASELINE_TREE run=$BASELINE_TREE/.build/release/$product tag=" base"; }
		echo "REP $r$tag" >>"$samples"
		(cd "$dir" && unshare --net -- sh -c 'ip link set lo up && exec "$0" "$@"' "$run" "$@") |
			tee -a "$samples" | sed -u "s/^/[rep $r $t] /" || { echo "[rep $r $t] failed" >&2; failed=1; }
	done
done
echo "== $REPS repetitions${BASELINE_TREE:+, each also of $BASELINE_TREE (base)}"
python3 bench/stats.py ${BASELINE_TREE:+--versus base} <"$samples"
exit "$failed"
