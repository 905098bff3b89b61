#!/usr/bin/env bash
# Run the whole test suite while two CPU-bound processes compete for the cores, several times in a row
# (default 3), and report each run's time. Every run must pass: a test that fails only under load is a
# flaky test to fix (bound it relative to a measurement taken in the same test, or wait on what it
# observes instead of sleeping).
#
#   tests/stress_check.sh            # 3 runs, 2 busy loops
#   RUNS=1 BUSY=4 tests/stress_check.sh -x -k server   # extra arguments go to pytest
#
# Run it from the repository root, in the environment README's test command installed.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
BUSY="${BUSY:-2}"
PYTHON="${PYTHON:-python}"

pids=()
stop_busy() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap stop_busy EXIT INT TERM
for _ in $(seq "$BUSY"); do
  "$PYTHON" -c 'while True: pass' &
  pids+=("$!")
done
echo "stress_check: $BUSY busy loops (pids ${pids[*]}) on $(nproc) cores; $RUNS runs of the suite"

failed=0
times=()
for run in $(seq "$RUNS"); do
  start=$(date +%s)
  "$PYTHON" -m pytest -q -p no:cacheprovider "$@"
  rc=$?
  took=$(( $(date +%s) - start ))
  times+=("run $run: ${took}s rc=$rc")
  echo "stress_check: run $run of $RUNS finished in ${took}s with exit code $rc"
  [ "$rc" -eq 0 ] || failed=1
done
printf 'stress_check: %s\n' "${times[@]}"
if [ "$failed" -ne 0 ]; then
  echo "stress_check: FAILED (a run did not pass under load)"
  exit 1
fi
echo "stress_check: all $RUNS runs passed under load"
