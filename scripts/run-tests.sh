#!/usr/bin/env bash
# `make test`'s pytest: the suite as two runs side by side, so that it fits in 20 minutes on 2 cores.
#
#   scripts/run-tests.sh PYTHON [pytest args...]
#
# The tests that place real calls, run the speech engines in real time or otherwise depend on the wall
# clock (`-m "sip or slow or realtime"`, ~280 tests, ~15 min of mostly waiting) run in the foreground with
# their output as usual. The rest (~960 tests, ~5 min alone) run at the same time under `nice -n 19`, so
# they only take CPU the foreground tests leave idle and cannot slow a call's audio or a test's clock;
# their output is printed when both are done. The exit status is the first failure's; "no test selected"
# (pytest's 5) counts as a failure only when both runs selected nothing. Arguments that choose tests
# themselves (`-m`, `-k`, a path) run one plain pytest instead.
set -uo pipefail
python="$1"
shift

for arg in "$@"; do
    case "$arg" in
        -m | -k | -m* | -k* | tests* | ./tests*) exec "$python" -m pytest "$@" ;;
    esac
done

log="$(mktemp "${TMPDIR:-/tmp}/parley-tests-XXXXXX.log")"
nice -n 19 "$python" -m pytest -m "not sip and not slow and not realtime" "$@" > "$log" 2>&1 &
others=$!
trap 'kill "$others" 2> /dev/null; rm -f "$log"' EXIT  # Ctrl-C stops both runs
trap 'exit 130' INT TERM
"$python" -m pytest -m "sip or slow or realtime" "$@"
realtime=$?
wait "$others"
rest=$?
echo
echo "=== the tests that neither place a call nor watch the clock (not sip/slow/realtime), run alongside under nice -n 19 ==="
cat "$log"

for rc in "$realtime" "$rest"; do
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
        exit "$rc"
    fi
done
if [ "$realtime" -eq 5 ] && [ "$rest" -eq 5 ]; then
    exit 5
fi
exit 0
