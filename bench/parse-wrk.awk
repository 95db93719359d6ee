# parse-wrk.awk: turn one wrk report (wrk 4.x, with or without --latency)
# into one tab-separated line:
#
#   ok rps requests seconds connect read write timeout non2xx p50_us p99_us
#
# ok is 1 when a "Requests/sec:" line was found, else 0 (wrk failed: the
# other fields are then 0). Counters wrk did not print are 0 (it prints the
# "Socket errors" and "Non-2xx or 3xx" lines only when they are not zero);
# p50_us/p99_us are -1 without --latency. Durations in any unit wrk uses
# (us, ms, s, m, h) are converted to microseconds (latencies) or seconds
# (run time). Works with mawk and gawk.

function to_us(s,    v, u) {
    v = s + 0
    u = s
    sub(/^[0-9.]+/, "", u)
    if (u == "us" || u == "") return v
    if (u == "ms") return v * 1000
    if (u == "s") return v * 1000000
    if (u == "m") return v * 60000000
    if (u == "h") return v * 3600000000
    return -1
}

BEGIN {
    ok = 0; rps = 0; requests = 0; seconds = 0
    connect = 0; readerr = 0; writeerr = 0; timeout = 0; non2xx = 0
    p50 = -1; p99 = -1; inlat = 0
}

/^[ \t]*Requests\/sec:/ { ok = 1; rps = $2 + 0 }

/^[ \t]*[0-9]+ requests in / {
    requests = $1 + 0
    d = $4
    sub(/,$/, "", d)
    seconds = to_us(d) / 1000000
}

/^[ \t]*Socket errors:/ {
    # Socket errors: connect 0, read 12, write 0, timeout 0
    line = $0
    sub(/^[ \t]*Socket errors:[ \t]*/, "", line)
    n = split(line, parts, /,[ \t]*/)
    for (i = 1; i <= n; i++) {
        split(parts[i], kv, /[ \t]+/)
        if (kv[1] == "connect") connect = kv[2] + 0
        else if (kv[1] == "read") readerr = kv[2] + 0
        else if (kv[1] == "write") writeerr = kv[2] + 0
        else if (kv[1] == "timeout") timeout = kv[2] + 0
    }
}

/^[ \t]*Non-2xx or 3xx responses:/ { non2xx = $NF + 0 }

/^[ \t]*Latency Distribution/ { inlat = 1; next }

inlat && /^[ \t]*[0-9.]+%[ \t]/ {
    if ($1 == "50%" || $1 == "50.000%") p50 = to_us($2)
    if ($1 == "99%" || $1 == "99.000%") p99 = to_us($2)
    next
}

inlat { inlat = 0 }

END {
    printf "%d\t%.2f\t%d\t%.3f\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\n", ok, rps, requests, seconds, \
        connect, readerr, writeerr, timeout, non2xx, p50, p99
}
