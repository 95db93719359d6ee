#!/bin/sh
# Run one libFuzzer target of `make fuzz` for a while over a copy of its seed
# corpus and print one summary line; the full log stays in build/fuzz/.
#   usage: tests/fuzz/run.sh NAME SECONDS   (from the top of the repo)
# Exit status: 0 when the fuzzer found nothing, 1 otherwise.
set -u
name=$1
secs=$2
dir=build/fuzz
corpus=$dir/corpus/$name
log=$dir/$name.log
mkdir -p "$corpus" "$dir/artifacts"
# Seeds are copied in, never written back: the fuzzer adds to the copy.
cp tests/fuzz/corpus/"$name"/* "$corpus"/
dict=""
case $name in head | http) dict=-dict=tests/fuzz/http.dict ;; esac

"$dir/fuzz_$name" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/$name-" $dict "$corpus" >"$log" 2>&1
rc=$?

stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1)
field() { printf '%s\n' "$last" | sed -n "s/.* $1: \([^ ]*\).*/\1/p"; }
if [ "$rc" -eq 0 ]; then
    printf 'fuzz_%s: ok, %ss, %s runs, %s exec/s, cov %s, ft %s, corpus %s (%s)\n' "$name" \
        "$secs" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
        "$(field cov)" "$(field ft)" "$(field corp)" "$log"
    exit 0
fi
why=$(grep -m 1 -E 'check failed|^SUMMARY|ERROR: libFuzzer|ERROR: AddressSanitizer' "$log" |
    sed "s/^fuzz_$name: //")
crash=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -n 1)
printf 'fuzz_%s: FAILED (exit %s): %s; input %s; log %s\n' "$name" "$rc" "$why" \
    "${crash:-?}" "$log"
exit 1
