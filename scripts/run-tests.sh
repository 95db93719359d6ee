#!/usr/bin/env bash
# Run a test binary (the arguments after LOG), keeping its whole output in
# LOG. On a failure, say again at the end which tests failed and how (each
# assertion's first lines): a CI log is often read from its tail, where
# the last tests' chatter would otherwise hide it.
set -uo pipefail
log=$1
shift
"$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
    echo "== what failed (the whole output: $log)"
    awk '/Assertion Failed|CRASH|Timed out|\[FAIL\]/ { n = 6 } n > 0 { print; n-- }' "$log" |
        head -n 120
    echo "== failed:"
    grep -E '^\[FAIL\]|CRASH' "$log" | head -n 20
fi
exit "$rc"
