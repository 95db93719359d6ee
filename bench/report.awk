# report.awk: turn bench/run.sh's raw.tsv into results.md and results.json.
#
#   awk -F'\t' -v md=OUT.md -v json=OUT.json -f bench/report.awk raw.tsv
#
# raw.tsv lines (tab-separated, first field is the kind):
#   meta       KEY VALUE
#   contestant ID LABEL COMMAND
#   run        ID SCENARIO REP RPS REQUESTS SECONDS CONNECT READ WRITE TIMEOUT
#              NON2XX P50_US P99_US LOAD1 RELOADS_SENT RELOADS_DONE COMMAND
#   mcpu       ID SCENARIO REP CPU CPU_UNIT CONNECTIONS REQUESTS
#   scpu       ID SCENARIO REP CPU CPU_UNIT REQUESTS (all the
#              contestant's processes: its CPU cost apart from wrk's)
#   (CPU time in CPU_UNIT per second: 1000000000 when it is the scheduler's
#   count in ns, else clock ticks)
#   idle       ID K OK FAILED STILL_OPEN RSS0_KB RSS_KB HWM_KB MASTER_FDS
#              WORKER_FDS COMMAND
#   uload      ID MODE REQUESTS OK CONNECT_ERRORS RESETS LOST BAD TIMEOUTS
#              IDLE_CLOSES PIDS RELOADS_SENT RELOADS_DONE COMMAND
#   fail       TEXT
# Scenarios: ka, close, steady-ka, steady-close, storm-ka, storm-close.
# With --baseline, the contestant uprun_base is up-run from another build
# (meta baseline_dir, git_base, v_uprun_base, compare_only).
# Works with mawk and gawk (no gawk extensions).

function jstr(s) {
    gsub(/\\/, "\\\\", s)
    gsub(/"/, "\\\"", s)
    gsub(/\t/, "\\t", s)
    gsub(/\r/, "\\r", s)
    gsub(/\n/, "\\n", s)
    return "\"" s "\""
}

function jnum(v) {
    if (v == "" || v == "-" || v == "null") return "null"
    return v + 0
}

function commas(n,    s, neg, out) {
    n = sprintf("%.0f", n)
    neg = ""
    if (substr(n, 1, 1) == "-") { neg = "-"; n = substr(n, 2) }
    out = ""
    while (length(n) > 3) {
        out = "," substr(n, length(n) - 2) out
        n = substr(n, 1, length(n) - 3)
    }
    return neg n out
}

function fmt_us(us) {
    if (us < 0) return "–"
    if (us < 1000) return sprintf("%.0f µs", us)
    if (us < 1000000) return sprintf("%.2f ms", us / 1000)
    return sprintf("%.2f s", us / 1000000)
}

# Sort the n values of arr[1..n] in place (insertion sort: n is tiny).
function sort_n(arr, n,    i, j, v) {
    for (i = 2; i <= n; i++) {
        v = arr[i]
        for (j = i - 1; j >= 1 && arr[j] > v; j--) arr[j + 1] = arr[j]
        arr[j + 1] = v
    }
}

# Statistics of metric m over the runs of contestant c in scenario sc:
# sets S_n, S_med, S_min, S_max, S_sum. Returns S_n.
function stats(c, sc, m,    n, i, a, key) {
    key = c SUBSEP sc
    n = nrun[key] + 0
    S_n = n; S_med = ""; S_min = ""; S_max = ""; S_sum = 0
    if (n == 0) return 0
    for (i = 1; i <= n; i++) {
        a[i] = val[key, m, i] + 0
        S_sum += a[i]
    }
    sort_n(a, n)
    S_min = a[1]; S_max = a[n]
    if (n % 2) S_med = a[(n + 1) / 2]
    else S_med = (a[n / 2] + a[n / 2 + 1]) / 2
    return n
}

function median(c, sc, m) {
    stats(c, sc, m)
    return S_med
}

function mark(pass) { return pass ? "✅" : "❌" }

function ratio_str(r) { return r == "" ? "–" : sprintf("%.2f", r) }

# A target row for the markdown table and the JSON list.
function target(name, value_text, goal_text, value, pass, kind) {
    ntg++
    tg_name[ntg] = name
    tg_text[ntg] = value_text
    tg_goal[ntg] = goal_text
    tg_val[ntg] = value
    tg_pass[ntg] = pass
    tg_kind[ntg] = kind
}

function ratio(a, b) {
    if (a == "" || b == "" || b + 0 == 0) return ""
    return (a + 0) / (b + 0)
}

function label(c) { return (c in lab) ? lab[c] : c }

# The ratio c1 ÷ c2 of metric sc (a scenario's requests/s, or "mcpu")
# repetition by repetition, the two runs of a repetition being a moment
# apart: "per rep MIN–MAX", or "" with fewer than two repetitions.
function per_rep(c1, c2, sc,    rep, r, n, lo, hi) {
    n = 0
    for (rep = 1; rep <= meta["reps"] + 0; rep++) {
        if (!((c1, sc, rep) in byrep) || !((c2, sc, rep) in byrep)) continue
        r = ratio(byrep[c1, sc, rep], byrep[c2, sc, rep])
        if (r == "") continue
        if (n == 0 || r < lo) lo = r
        if (n == 0 || r > hi) hi = r
        n++
    }
    return n < 2 ? "" : sprintf("per rep %.2f–%.2f", lo, hi)
}

BEGIN { FS = "\t"; ncont = 0; nfail = 0; nruns = 0; nmcpu = 0; nscpu = 0; nidle = 0; nul = 0 }

$1 == "meta" { meta[$2] = $3; next }
$1 == "contestant" { ncont++; cont[ncont] = $2; lab[$2] = $3; ccmd[$2] = $4; next }
$1 == "fail" { nfail++; fails[nfail] = $2; next }
$1 == "run" {
    nruns++
    for (i = 2; i <= 18; i++) R[nruns, i] = $i
    key = $2 SUBSEP $3
    k = ++nrun[key]
    val[key, "rps", k] = $5
    val[key, "requests", k] = $6
    val[key, "connect", k] = $8
    val[key, "read", k] = $9
    val[key, "write", k] = $10
    val[key, "timeout", k] = $11
    val[key, "sockerr", k] = $8 + $9 + $10 + $11
    val[key, "non2xx", k] = $12
    val[key, "p50", k] = $13
    val[key, "p99", k] = $14
    val[key, "sent", k] = $16
    val[key, "done", k] = $17
    scmd[$3] = $18
    byrep[$2, $3, $4] = $5
    next
}
$1 == "mcpu" {
    nmcpu++
    for (i = 2; i <= 8; i++) M[nmcpu, i] = $i
    if ($7 > 0 && $6 > 0) {
        key = $2 SUBSEP "mcpu"
        k = ++nrun[key]
        # CPU milliseconds per 1,000 connections
        val[key, "ms1000", k] = ($5 / $6 * 1000) / $7 * 1000
        val[key, "conns", k] = $7
        val[key, "cpu", k] = $5
        cpu_unit = $6
        byrep[$2, "mcpu", $4] = val[key, "ms1000", k]
    }
    next
}
$1 == "scpu" {
    nscpu++
    for (i = 2; i <= 7; i++) SC[nscpu, i] = $i
    if ($7 > 0 && $6 > 0) {
        key = $2 SUBSEP "scpu-" $3
        k = ++nrun[key]
        # CPU microseconds per request
        val[key, "us", k] = $5 / $6 * 1000000 / $7
        cpu_unit = $6
    }
    next
}
$1 == "idle" { nidle++; for (i = 2; i <= 12; i++) I[nidle, i] = $i; next }
$1 == "uload" { nul++; for (i = 2; i <= 15; i++) U[nul, i] = $i; next }

END {
    quick = (meta["mode"] == "quick")
    # How run.sh counted CPU time (CPU_UNIT: ns from schedstat, or ticks).
    by_sched = (cpu_unit == 1000000000)
    cpu_how = by_sched ? "the scheduler's count, `/proc/<pid>/task/*/schedstat`" : \
        "utime+stime in clock ticks, `/proc/<pid>/stat`: this kernel has no schedstat"
    # --compare-only: up-run and its baseline alone, Keep-Alive and
    # connection per request alone.
    cmp_only = (meta["compare_only"] == 1)
    has_base = ("uprun_base" in lab)
    N = meta["workers"]

    # ------------------------------------------------------------ targets
    ka_up = median("uprun", "ka", "rps"); ka_nm = median("nomaster", "ka", "rps")
    ka_ng = median("nginx", "ka", "rps"); ka_np = median("nginx_proxy", "ka", "rps")
    ka_hp = median("haproxy", "ka", "rps")
    cl_up = median("uprun", "close", "rps"); cl_nm = median("nomaster", "close", "rps")
    cl_ng = median("nginx", "close", "rps"); cl_np = median("nginx_proxy", "close", "rps")
    cl_hp = median("haproxy", "close", "rps")

    # The goals are the performance issue's (bench/README.md): clearly
    # ahead of nginx, and a master that costs almost nothing.
    if (!cmp_only) {
        r = ratio(ka_up, ka_nm); target("Keep-Alive: up-run ÷ no-master limit", ratio_str(r), "≥ 1.00", r, r != "" && r >= 1.0, "ratio")
        r = ratio(ka_up, ka_ng); target("Keep-Alive: up-run ÷ nginx return 200", ratio_str(r), "≥ 1.15", r, r != "" && r >= 1.15, "ratio")
        r = ratio(cl_up, cl_nm); target("Connection per request: up-run ÷ no-master limit", ratio_str(r), "≥ 1.00", r, r != "" && r >= 1.0, "ratio")
        r = ratio(cl_up, cl_ng); target("Connection per request: up-run ÷ nginx return 200", ratio_str(r), "≥ 1.10", r, r != "" && r >= 1.1, "ratio")
        if ("uprun_alog" in lab) {
            r = ratio(median("uprun_alog", "ka", "rps"), ka_up)
            target("Keep-Alive: up-run --access-log FILE ÷ without", ratio_str(r), "≥ 0.90", r, r != "" && r >= 0.9, "ratio")
        }

        for (mi = 1; mi <= 2; mi++) {
            mode = mi == 1 ? "ka" : "close"
            mname = mi == 1 ? "Keep-Alive" : "connection per request"
            n = stats("uprun", "storm-" mode, "sockerr"); se = S_sum
            stats("uprun", "storm-" mode, "non2xx"); nx = S_sum
            if (n > 0)
                target("Reload storm, " mname ": up-run socket errors + non-2xx (wrk, all runs)", \
                    sprintf("%d + %d", se, nx), "0", se + nx, se + nx == 0, "count")
            else
                target("Reload storm, " mname ": up-run socket errors + non-2xx (wrk, all runs)", "not run", "0", "", 0, "count")
        }
        ul_found = 0
        for (i = 1; i <= nul; i++) if (U[i, 2] == "uprun" && U[i, 3] == "storm") {
            ul_found = 1
            bad = U[i, 6] + U[i, 7] + U[i, 8] + U[i, 9] + U[i, 10]
            target("Reload storm, up-load (checks every answer): up-run failed requests", \
                sprintf("%d of %s", bad, commas(U[i, 4])), "0", bad, bad == 0, "count")
        }
        if (!ul_found) target("Reload storm, up-load: up-run failed requests", "not run", "0", "", 0, "count")
        for (mi = 1; mi <= 2; mi++) {
            mode = mi == 1 ? "ka" : "close"
            mname = mi == 1 ? "Keep-Alive" : "connection per request"
            r = ratio(median("uprun", "storm-" mode, "rps"), median("uprun", "steady-" mode, "rps"))
            target("Reload storm, " mname ": up-run throughput ÷ without reloads", ratio_str(r), "≥ 0.95", r, r != "" && r >= 0.95, "ratio")
        }
        rss = ""
        for (i = 1; i <= nidle; i++) if (I[i, 2] == "uprun") { rss = I[i, 8]; idle_k = I[i, 3]; idle_ok = I[i, 4] }
        if (rss != "" && rss >= 0)
            target(sprintf("Master RSS with %s idle Keep-Alive connections in the workers", commas(idle_k)), \
                sprintf("%.2f MiB", rss / 1024), "≤ 4 MiB", rss / 1024, rss / 1024 <= 4 && idle_ok == idle_k, "mib")
        else
            target("Master RSS with idle connections", "not measured", "≤ 4 MiB", "", 0, "mib")
        wb = meta["worker_idle_bytes_uprun"]
        if (wb != "" && wb >= 0)
            target(sprintf("Worker memory per idle Keep-Alive connection (%s, VmRSS)", commas(idle_k)), \
                sprintf("%d B", wb), "≤ 600 B", wb, wb <= 600, "bytes")
        rl = meta["reload_latency_median_ms"]
        if (rl != "")
            target(sprintf("Signal → first answer from the new generation (%s workers, median of %s reloads)", meta["workers"], meta["reload_latency_n"]), \
                sprintf("%.2f ms (%.2f–%.2f)", rl, meta["reload_latency_min_ms"], meta["reload_latency_max_ms"]), "≤ 3 ms", rl, rl <= 3, "ms")
        else
            target("Signal → first answer from the new generation", "not measured", "≤ 3 ms", "", 0, "ms")
        # On CPUs shared with wrk, throughput divides the machine between
        # wrk and the server: the CPU each server spent per request
        # compares the servers alone.
        for (mi = 1; mi <= 2; mi++) {
            mode = mi == 1 ? "ka" : "close"
            mname = mi == 1 ? "Keep-Alive" : "Connection per request"
            su = median("uprun", "scpu-" mode, "us"); sg = median("nginx", "scpu-" mode, "us")
            r = ratio(su, sg)
            if (r != "")
                target(mname ": server CPU per request, up-run ÷ nginx return 200 (lower is better)", \
                    sprintf("%.2f (%.1f ÷ %.1f µs)", r, su, sg), "reported", r, 1, "info")
            else
                target(mname ": server CPU per request, up-run ÷ nginx return 200 (lower is better)", \
                    "not measured", "reported", "", 0, "info")
        }
        # ms per 1,000 connections is µs per connection.
        stats("uprun", "mcpu", "ms1000")
        if (S_n > 0)
            target("Master CPU per handed-off connection", sprintf("%.1f µs (%.1f–%.1f)", S_med, S_min, S_max), \
                "≤ 3 µs", S_med, S_med <= 3, "us")
        else
            target("Master CPU per handed-off connection", "not measured", "≤ 3 µs", "", 0, "us")
    }
    # Against the baseline (--baseline): the same up-run, another build.
    # Reported, not marked: two up-runs of one and the same build, run as
    # up-run and baseline, differed by up to 13 % in Keep-Alive on a shared
    # 2-CPU machine, every repetition the same way, so a line at 0.97 would
    # mark noise.
    if (has_base) {
        for (mi = 1; mi <= 2; mi++) {
            mode = mi == 1 ? "ka" : "close"
            mname = mi == 1 ? "Keep-Alive" : "Connection per request"
            r = ratio(median("uprun", mode, "rps"), median("uprun_base", mode, "rps"))
            pr = per_rep("uprun", "uprun_base", mode)
            target(mname ": up-run ÷ baseline", ratio_str(r) (pr != "" ? " (" pr ")" : ""), \
                "reported; > 1: faster than the baseline", r, r != "", "info")
        }
        cpu_up = median("uprun", "mcpu", "ms1000"); cpu_base = median("uprun_base", "mcpu", "ms1000")
        r = ratio(cpu_up, cpu_base)
        pr = per_rep("uprun", "uprun_base", "mcpu")
        if (r != "")
            target("Master CPU per 1,000 handoffs: up-run ÷ baseline (lower is better)", \
                sprintf("%.2f (%.1f ÷ %.1f ms%s)", r, cpu_up, cpu_base, pr != "" ? "; " pr : ""), \
                "reported; < 1: the master spends less than the baseline's", r, 1, "info")
        else
            target("Master CPU per 1,000 handoffs: up-run ÷ baseline (lower is better)", "not measured", \
                "reported; < 1: the master spends less than the baseline's", "", 0, "info")
    }
    if (!cmp_only) {
        # The issue's question: does the handoff beat a proxy in front?
        r = ratio(ka_up, ka_np); target("Keep-Alive: up-run ÷ nginx proxy", ratio_str(r), "> 1 (handoff beats a proxy)", r, r != "" && r > 1, "ratio")
        r = ratio(ka_up, ka_hp); target("Keep-Alive: up-run ÷ HAProxy", ratio_str(r), "> 1 (handoff beats a proxy)", r, r != "" && r > 1, "ratio")
        r = ratio(cl_up, cl_np); target("Connection per request: up-run ÷ nginx proxy", ratio_str(r), "> 1 (handoff beats a proxy)", r, r != "" && r > 1, "ratio")
        r = ratio(cl_up, cl_hp); target("Connection per request: up-run ÷ HAProxy", ratio_str(r), "> 1 (handoff beats a proxy)", r, r != "" && r > 1, "ratio")
    }

    # ------------------------------------------------------------ markdown
    o = md
    printf("# up — benchmark results\n\n") > o
    if (quick)
        printf("> **Quick smoke run** (`make bench-quick`): %s × %s s per scenario, %s s storms, %s idle connections. The numbers are indicative only and the marks are not enforced; `make bench` gives the real figures.\n\n", meta["reps"], meta["duration_s"], meta["storm_s"], commas(meta["idle_conns"])) > o
    if (cmp_only)
        printf("> **Comparison run** (`bench/run.sh --baseline DIR --compare-only`, `make bench-compare`): up-run of this tree against the baseline, another build of up started the same way, alone, in the Keep-Alive and connection-per-request scenarios (%s × %s s); no proxies, reload storms, idle memory or up-load. The marks are not enforced.\n\n", meta["reps"], meta["duration_s"]) > o
    printf("Generated by `bench/run.sh` (%s run) on %s in %d s, at %s", meta["mode"], meta["date"], meta["elapsed_s"], meta["git"]) > o
    if (has_base) printf(", against the baseline %s (`%s`)", meta["git_base"], meta["baseline_dir"]) > o
    printf(".\n\n") > o
    printf("| Machine | |\n|---|---|\n") > o
    printf("| CPU | %s |\n", meta["cpu_model"]) > o
    printf("| CPUs (nproc) | %s |\n", meta["nproc"]) > o
    printf("| Kernel | %s |\n", meta["kernel"]) > o
    printf("| Distribution | %s |\n", meta["distro"]) > o
    printf("| Load average (1 min) | %s at the start, %s at the end |\n", meta["load_start"], meta["load_end"]) > o
    printf("| Open-file limit | %s |\n\n", meta["nofile"]) > o
    printf("| Versions | |\n|---|---|\n") > o
    printf("| up-run | %s |\n", meta["v_uprun"]) > o
    if (has_base) printf("| up-run baseline | %s (%s) |\n", meta["v_uprun_base"], meta["git_base"]) > o
    if ("v_nginx" in meta) printf("| nginx | %s |\n", meta["v_nginx"]) > o
    if ("v_haproxy" in meta) printf("| HAProxy | %s |\n", meta["v_haproxy"]) > o
    printf("| wrk | %s |\n", meta["v_wrk"]) > o
    printf("| cc | %s |\n\n", meta["v_cc"]) > o
    printf("Setup: every contestant has **%s workers** and listens on its own 127.0.0.1 port; wrk runs with **1 thread and %s connections**. Each scenario is run %s × %s s, the contestants interleaved and their order rotated between repetitions; tables give the **median** and the **spread (min–max)**. wrk and the servers **share the same %s CPUs** over loopback, so every figure includes wrk's own CPU use, and other work on the machine shows as noise (see the load average). *Server CPU per request* is what the contestant's own processes (master, workers, their threads; a proxy's back ends included) spent on the CPUs during a run (%s), divided by its requests: it compares the servers apart from wrk, whose share of the same CPUs bounds every throughput ratio.\n\n", \
        N, meta["wrk_connections"], meta["reps"], meta["duration_s"], meta["nproc"], cpu_how) > o

    printf("## Targets\n\n| Target | Measured | Goal | |\n|---|---|---|---|\n") > o
    for (i = 1; i <= ntg; i++)
        printf("| %s | %s | %s | %s |\n", tg_name[i], tg_text[i], tg_goal[i], \
            tg_kind[i] == "info" ? (tg_pass[i] ? "ℹ️" : "❌") : mark(tg_pass[i])) > o
    if (cmp_only) printf("\nBoth up-runs use the default back end (%s; the baseline: %s). Ratios divide medians measured in this run.", meta["backend_uprun"], meta["backend_uprun_base"]) > o
    else printf("\nThe last four rows answer the issue's question (handoff against a proxy in front); the up-run rows use the default back end (%s). Ratios divide medians measured in this run.", meta["backend_uprun"]) > o
    if (has_base) {
        printf(" The baseline is the up-run of `%s` (%s), with the up-worker beside it and its own `examples/hello.so`; \"per rep\" is the spread of the ratio between the two runs of each repetition, which ran a moment apart. A ratio means something only beyond that spread and beyond what two copies of the same build differ by on this machine (`bench/run.sh --baseline build --compare-only` measures it).", meta["baseline_dir"], meta["git_base"]) > o
        if (!by_sched && stats("uprun", "mcpu", "cpu"))
            printf(" The master's CPU is counted in clock ticks of 1/%s s (this kernel has no schedstat): up-run's took %d per connection-per-request run (median), so one tick is %.1f %% of its figure.", cpu_unit, S_med, S_med > 0 ? 100 / S_med : 100) > o
    }
    printf("\n\n") > o

    for (si = 1; si <= 2; si++) {
        sc = si == 1 ? "ka" : "close"
        if (si == 1) printf("## Keep-Alive\n\n`wrk -t1 -c%s -d%ss --latency`\n\n", meta["wrk_connections"], meta["duration_s"]) > o
        else printf("## A new connection per request\n\n`wrk -t1 -c%s -d%ss --latency -H 'Connection: close'`\n\n", meta["wrk_connections"], meta["duration_s"]) > o
        # Throughput relative to the contestants that ran: no master,
        # nginx, the baseline.
        nrc = 0
        if ("nomaster" in lab) { rc_id[++nrc] = "nomaster"; rc_head[nrc] = "× no master" }
        if ("nginx" in lab) { rc_id[++nrc] = "nginx"; rc_head[nrc] = "× nginx" }
        if (has_base) { rc_id[++nrc] = "uprun_base"; rc_head[nrc] = "× baseline" }
        head = "| Contestant | Requests/s (median) | spread |"; align = "|---|---:|---:|"; empty = ""
        for (j = 1; j <= nrc; j++) {
            rc_val[j] = median(rc_id[j], sc, "rps")
            head = head " " rc_head[j] " |"; align = align "---:|"; empty = empty " |"
        }
        printf("%s server CPU per request (median) | p50 | p50 spread | p99 | p99 spread | socket errors (c/r/w/t, all runs) | non-2xx |\n", head) > o
        printf("%s---:|---:|---:|---:|---:|---:|---:|\n", align) > o
        for (ci = 1; ci <= ncont; ci++) {
            c = cont[ci]
            if (!stats(c, sc, "rps")) { printf("| %s | not run | |%s | | | | | | |\n", label(c), empty) > o; continue }
            rm = S_med; rmin = S_min; rmax = S_max
            stats(c, sc, "p50"); p50m = S_med; p50a = S_min; p50b = S_max
            stats(c, sc, "p99"); p99m = S_med; p99a = S_min; p99b = S_max
            stats(c, sc, "connect"); e1 = S_sum
            stats(c, sc, "read"); e2 = S_sum
            stats(c, sc, "write"); e3 = S_sum
            stats(c, sc, "timeout"); e4 = S_sum
            stats(c, sc, "non2xx"); n2 = S_sum
            printf("| %s | %s | %s–%s |", label(c), commas(rm), commas(rmin), commas(rmax)) > o
            for (j = 1; j <= nrc; j++) printf(" %s |", ratio_str(ratio(rm, rc_val[j]))) > o
            cu = median(c, "scpu-" sc, "us")
            printf(" %s |", cu == "" ? "–" : sprintf("%.1f µs", cu)) > o
            printf(" %s | %s–%s | %s | %s–%s | %d/%d/%d/%d | %d |\n", \
                fmt_us(p50m), fmt_us(p50a), fmt_us(p50b), fmt_us(p99m), fmt_us(p99a), fmt_us(p99b), e1, e2, e3, e4, n2) > o
        }
        printf("\n") > o
    }

    if (!cmp_only) {
        printf("## Reload under load\n\n") > o
        printf("A reload signal every 100 ms during a %s s wrk run (`-t1 -c%s`, Keep-Alive, and with `-H 'Connection: close'`), %s × each: up-run `kill -USR2 <master>`, nginx `kill -HUP <master>` (= `nginx -s reload`), HAProxy `kill -USR2 <master>` (master-worker mode, `-W`). For up-run a run of the same length without reloads precedes each storm and is its baseline; for nginx and HAProxy († ) the baseline is the median of their %s s runs above. Socket errors and non-2xx are totals over all the runs, as wrk reports them.\n\n", \
            meta["storm_s"], meta["wrk_connections"], meta["reps"], meta["duration_s"]) > o
        printf("| Contestant | Mode | Reloads sent (done) per run | Requests/s (median) | spread | × without reloads | Requests (all runs) | connect | read | write | timeout | non-2xx |\n") > o
        printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n") > o
        for (ci = 1; ci <= ncont; ci++) {
            c = cont[ci]
            for (mi = 1; mi <= 2; mi++) {
                mode = mi == 1 ? "ka" : "close"
                mname = mi == 1 ? "Keep-Alive" : "conn/request"
                if (!stats(c, "storm-" mode, "rps")) continue
                rm = S_med; rmin = S_min; rmax = S_max
                if (stats(c, "steady-" mode, "rps")) { base = S_med; dag = "" }
                else { base = median(c, mode, "rps"); dag = " †" }
                stats(c, "storm-" mode, "sent"); sent = S_med
                stats(c, "storm-" mode, "done"); rdone = S_med
                stats(c, "storm-" mode, "requests"); rq = S_sum
                stats(c, "storm-" mode, "connect"); e1 = S_sum
                stats(c, "storm-" mode, "read"); e2 = S_sum
                stats(c, "storm-" mode, "write"); e3 = S_sum
                stats(c, "storm-" mode, "timeout"); e4 = S_sum
                stats(c, "storm-" mode, "non2xx"); n2 = S_sum
                printf("| %s | %s | %d%s | %s | %s–%s | %s%s | %s | %d | %d | %d | %d | %d |\n", label(c), mname, sent, \
                    rdone >= 0 ? sprintf(" (%d)", rdone) : "", commas(rm), commas(rmin), commas(rmax), \
                    ratio_str(ratio(rm, base)), dag, commas(rq), e1, e2, e3, e4, n2) > o
            }
            if (stats(c, "steady-ka", "rps") || stats(c, "steady-close", "rps")) {
                for (mi = 1; mi <= 2; mi++) {
                    mode = mi == 1 ? "ka" : "close"
                    if (!stats(c, "steady-" mode, "rps")) continue
                    rm = S_med; rmin = S_min; rmax = S_max
                    stats(c, "steady-" mode, "requests"); rq = S_sum
                    stats(c, "steady-" mode, "connect"); e1 = S_sum
                    stats(c, "steady-" mode, "read"); e2 = S_sum
                    stats(c, "steady-" mode, "write"); e3 = S_sum
                    stats(c, "steady-" mode, "timeout"); e4 = S_sum
                    stats(c, "steady-" mode, "non2xx"); n2 = S_sum
                    printf("| %s | %s, no reloads | – | %s | %s–%s | 1.00 | %s | %d | %d | %d | %d | %d |\n", label(c), \
                        mi == 1 ? "Keep-Alive" : "conn/request", commas(rm), commas(rmin), commas(rmax), commas(rq), e1, e2, e3, e4, n2) > o
                }
            }
        }
        printf("\n") > o

        printf("### Zero-loss check (up-load)\n\n") > o
        if (nul == 0) printf("Not run (build/tools/up-load missing).\n\n") > o
        else {
            printf("wrk cannot tell a server's harmless close from a lost request, so the repository's checking client runs a separate storm: `%s` with %s Keep-Alive loops and %s connection-per-request loops; it parses every answer and sorts each request into one outcome. *failed* = connect errors + resets + lost + bad + timeouts; idle closes (a Keep-Alive socket closed while idle, retried) are harmless and only reported. Its request counts are not a throughput measure (the wrk storms above are): at each reload its Keep-Alive connections move to the new generation's workers, which start cold, and its connection-per-request loops, whose requests each cost several Keep-Alive ones, take a share of the CPU that shifts from run to run.\n\n", \
                meta["uload_cmd"], 64, 2) > o
            printf("| Contestant | Run | Reloads sent (done) | Requests | OK | connect errors | resets | lost | bad | timeouts | idle closes | failed |\n") > o
            printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n") > o
            for (i = 1; i <= nul; i++) {
                bad = U[i, 6] + U[i, 7] + U[i, 8] + U[i, 9] + U[i, 10]
                printf("| %s | %s | %s | %s | %s | %d | %d | %d | %d | %d | %d | %d %s |\n", label(U[i, 2]), \
                    U[i, 3] == "storm" ? "reload every 100 ms" : "no reloads", \
                    U[i, 3] == "storm" ? (U[i, 13] + 0) (U[i, 14] >= 0 ? " (" U[i, 14] ")" : "") : "–", \
                    commas(U[i, 4]), commas(U[i, 5]), U[i, 6], U[i, 7], U[i, 8], U[i, 9], U[i, 10], U[i, 11], bad, \
                    bad == 0 ? "✅" : "❌") > o
            }
            printf("\n") > o
        }
    }

    printf("## Master cost\n\n") > o
    printf("CPU: the time the up-run master spent on a CPU (%s) before and after each connection-per-request run, divided by the connections it accepted in that run (`up-run status`).", \
        cpu_how) > o
    if (cmp_only) printf(" Memory is not measured in a comparison run.\n\n") > o
    else if ("idle_workers" in meta)
        printf(" Memory: `VmRSS` of the master (from `/proc/<pid>/status`) of an up-run of its own with the row's back end and %s workers, started fresh, after %s `bench/idle-conns` opened connections, sent one request on each, read the answer and kept them idle, so that the workers hold them.\n\n", meta["idle_workers"], meta["idle_clients"]) > o
    else printf(" Memory: `VmRSS` of the master (from `/proc/<pid>/status`) after `bench/idle-conns` opened connections, sent one request on each, read the answer and kept them idle, so that the workers hold them.\n\n") > o
    printf("| Back end | CPU ms per 1,000 connections (median) | spread | connections per run (median) |") > o
    if (cmp_only) printf("\n|---|---:|---:|---:|\n") > o
    else printf(" idle connections held | VmRSS before | VmRSS with them | VmHWM | master fds | worker fds |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n") > o
    for (ci = 1; ci <= ncont; ci++) {
        c = cont[ci]
        has_cpu = stats(c, "mcpu", "ms1000"); cm = S_med; ca = S_min; cb = S_max
        stats(c, "mcpu", "conns"); cn = S_med
        found = 0
        for (i = 1; i <= nidle; i++) if (I[i, 2] == c) found = i
        if (!has_cpu && !found) continue
        printf("| %s | %s | %s | %s |", label(c), has_cpu ? sprintf("%.1f", cm) : "–", \
            has_cpu ? sprintf("%.1f–%.1f", ca, cb) : "–", has_cpu ? commas(cn) : "–") > o
        if (cmp_only) printf("\n") > o
        else if (found) {
            i = found
            printf(" %s of %s (%s open at the check) | %.2f MiB | %.2f MiB | %.2f MiB | %d | %d |\n", commas(I[i, 4]), commas(I[i, 3]), \
                I[i, 6] >= 0 ? commas(I[i, 6]) : "?", I[i, 7] / 1024, I[i, 8] / 1024, I[i, 9] / 1024, I[i, 10], I[i, 11]) > o
        } else printf(" – | – | – | – | – | – |\n") > o
    }
    printf("\n") > o

    printf("## Commands\n\n") > o
    for (ci = 1; ci <= ncont; ci++) printf("- %s: `%s`\n", label(cont[ci]), ccmd[cont[ci]]) > o
    if ("backend_workers" in meta) {
        printf("- proxy back ends: `%s`\n", meta["backend_workers"]) > o
        printf("- the configuration files are written from the templates in bench/ (`*.in`) into a temporary directory (`$TMP`).\n") > o
    }
    nsc = split("ka close steady-ka steady-close storm-ka storm-close", scs, " ")
    for (si = 1; si <= nsc; si++) if (scs[si] in scmd) {
        t = scmd[scs[si]]
        gsub(/127\.0\.0\.1:[0-9]+/, "127.0.0.1:PORT", t)
        printf("- wrk, %s: `%s`\n", scs[si], t) > o
    }
    for (i = 1; i <= nidle; i++) printf("- idle connections: `%s`\n", I[i, 12]) > o
    if (meta["reload_latency_cmd"] != "") printf("- reload latency: `%s`\n", meta["reload_latency_cmd"]) > o
    for (i = 1; i <= nul; i++) printf("- up-load %s: `%s`\n", U[i, 3], U[i, 15]) > o
    printf("\n## Notes\n\n") > o
    if (cmp_only)
        printf("- wrk (1 thread) and both up-runs share the machine's %s CPUs; wrk loads one up-run at a time, the other waits idle.\n", meta["nproc"]) > o
    else {
        printf("- wrk (1 thread) and all the servers share the machine's %s CPUs; a proxy contestant runs %s proxy threads/processes *and* %s app workers on them, as it would on a real host.\n", meta["nproc"], N, N) > o
        printf("- wrk counts a connection the server closes before answering (an old nginx or HAProxy process closing its idle Keep-Alive connections at a reload, a close racing the next request) as a read error, and a request not answered within 2 s as a timeout; it cannot tell a harmless close from a lost request. The up-load table is the authoritative count of lost requests.\n") > o
        printf("- A storm's \"reloads sent\" counts the signals the driver sent (one every 100 ms at best: a busy machine sends fewer); \"done\" is the count of reloads up-run reports (`up-run status`, before and after the run); a reload requested while another is still starting supersedes it.\n") > o
        printf("- nginx is given `keepalive_requests 1000000000` so that it keeps wrk's connections open as up-run and up-worker do (its default would close each after 1,000 requests).\n") > o
    }
    printf("- up-run log: %s warnings, %s errors, %s failed reloads, %s respawns (default back end)", \
        meta["log_warn_uprun"], meta["log_err_uprun"], meta["reload_failures_uprun"], meta["respawns_uprun"]) > o
    if ("uprun_epoll" in lab)
        printf("; epoll: %s warnings, %s errors, %s failed reloads, %s respawns", \
            meta["log_warn_uprun_epoll"], meta["log_err_uprun_epoll"], meta["reload_failures_uprun_epoll"], meta["respawns_uprun_epoll"]) > o
    if (has_base)
        printf("; baseline: %s warnings, %s errors, %s failed reloads, %s respawns", \
            meta["log_warn_uprun_base"], meta["log_err_uprun_base"], meta["reload_failures_uprun_base"], meta["respawns_uprun_base"]) > o
    printf(".\n") > o
    if (nfail > 0) {
        printf("\n## Failures\n\n") > o
        for (i = 1; i <= nfail; i++) printf("- %s\n", fails[i]) > o
    }
    close(o)

    # ------------------------------------------------------------ json
    o = json
    printf("{\n") > o
    printf("  \"mode\": %s,\n  \"date\": %s,\n  \"elapsed_s\": %s,\n  \"git\": %s,\n", jstr(meta["mode"]), jstr(meta["date"]), jnum(meta["elapsed_s"]), jstr(meta["git"])) > o
    if (has_base)
        printf("  \"baseline\": {\"dir\": %s, \"git\": %s, \"up-run\": %s, \"backend\": %s, \"compare_only\": %s},\n", jstr(meta["baseline_dir"]), \
            jstr(meta["git_base"]), jstr(meta["v_uprun_base"]), jstr(meta["backend_uprun_base"]), cmp_only ? "true" : "false") > o
    printf("  \"machine\": {\"cpu_model\": %s, \"nproc\": %s, \"kernel\": %s, \"distro\": %s, \"loadavg_start\": %s, \"loadavg_end\": %s, \"nofile\": %s},\n", \
        jstr(meta["cpu_model"]), jnum(meta["nproc"]), jstr(meta["kernel"]), jstr(meta["distro"]), jnum(meta["load_start"]), jnum(meta["load_end"]), jstr(meta["nofile"])) > o
    printf("  \"versions\": {\"up-run\": %s, \"nginx\": %s, \"haproxy\": %s, \"wrk\": %s, \"cc\": %s},\n", \
        jstr(meta["v_uprun"]), jstr(meta["v_nginx"]), jstr(meta["v_haproxy"]), jstr(meta["v_wrk"]), jstr(meta["v_cc"])) > o
    printf("  \"config\": {\"workers\": %s, \"repetitions\": %s, \"duration_s\": %s, \"storm_s\": %s, \"reload_interval_ms\": %s, \"idle_connections\": %s, \"wrk_threads\": %s, \"wrk_connections\": %s, \"uprun_backend\": %s, \"uprun_epoll_backend\": %s},\n", \
        jnum(N), jnum(meta["reps"]), jnum(meta["duration_s"]), jnum(meta["storm_s"]), jnum(meta["reload_interval_ms"]), jnum(meta["idle_conns"]), \
        jnum(meta["wrk_threads"]), jnum(meta["wrk_connections"]), jstr(meta["backend_uprun"]), jstr(meta["backend_uprun_epoll"])) > o
    printf("  \"contestants\": [\n") > o
    for (ci = 1; ci <= ncont; ci++)
        printf("    {\"id\": %s, \"label\": %s, \"command\": %s}%s\n", jstr(cont[ci]), jstr(lab[cont[ci]]), jstr(ccmd[cont[ci]]), ci < ncont ? "," : "") > o
    printf("  ],\n  \"proxy_backend_command\": %s,\n", jstr(meta["backend_workers"])) > o

    printf("  \"summary\": {\n") > o
    nsc = split("ka close steady-ka steady-close storm-ka storm-close", scs, " ")
    nm = split("rps requests p50 p99 connect read write timeout non2xx", ms, " ")
    firstc = 1
    for (ci = 1; ci <= ncont; ci++) {
        c = cont[ci]
        printf("%s    %s: {", firstc ? "" : ",\n", jstr(c)) > o
        firstc = 0
        firsts = 1
        for (si = 1; si <= nsc; si++) {
            if (!stats(c, scs[si], "rps")) continue
            printf("%s\n      %s: {\"runs\": %d", firsts ? "" : ",", jstr(scs[si]), S_n) > o
            firsts = 0
            for (mj = 1; mj <= nm; mj++) {
                stats(c, scs[si], ms[mj])
                printf(", %s: {\"median\": %s, \"min\": %s, \"max\": %s, \"total\": %s}", jstr(ms[mj] == "p50" ? "p50_us" : ms[mj] == "p99" ? "p99_us" : ms[mj]), \
                    jnum(S_med), jnum(S_min), jnum(S_max), jnum(S_sum)) > o
            }
            printf("}") > o
        }
        printf("%s}", firsts ? "" : "\n    ") > o
    }
    printf("\n  },\n") > o

    printf("  \"targets\": [\n") > o
    for (i = 1; i <= ntg; i++)
        printf("    {\"name\": %s, \"measured\": %s, \"value\": %s, \"goal\": %s, \"pass\": %s}%s\n", jstr(tg_name[i]), jstr(tg_text[i]), \
            jnum(tg_val[i]), jstr(tg_goal[i]), tg_kind[i] == "info" ? "null" : (tg_pass[i] ? "true" : "false"), i < ntg ? "," : "") > o
    printf("  ],\n") > o

    printf("  \"runs\": [\n") > o
    for (i = 1; i <= nruns; i++)
        printf("    {\"contestant\": %s, \"scenario\": %s, \"rep\": %s, \"requests_per_s\": %s, \"requests\": %s, \"seconds\": %s, \"socket_errors\": {\"connect\": %s, \"read\": %s, \"write\": %s, \"timeout\": %s}, \"non2xx\": %s, \"latency_us\": {\"p50\": %s, \"p99\": %s}, \"loadavg\": %s, \"reloads_sent\": %s, \"reloads_done\": %s, \"command\": %s}%s\n", \
            jstr(R[i, 2]), jstr(R[i, 3]), jnum(R[i, 4]), jnum(R[i, 5]), jnum(R[i, 6]), jnum(R[i, 7]), jnum(R[i, 8]), jnum(R[i, 9]), jnum(R[i, 10]), \
            jnum(R[i, 11]), jnum(R[i, 12]), R[i, 13] < 0 ? "null" : jnum(R[i, 13]), R[i, 14] < 0 ? "null" : jnum(R[i, 14]), jnum(R[i, 15]), \
            jnum(R[i, 16]), R[i, 17] < 0 ? "null" : jnum(R[i, 17]), jstr(R[i, 18]), i < nruns ? "," : "") > o
    printf("  ],\n") > o

    printf("  \"master\": {\n    \"cpu\": [\n") > o
    for (i = 1; i <= nmcpu; i++)
        printf("      {\"contestant\": %s, \"scenario\": %s, \"rep\": %s, \"cpu\": %s, \"cpu_unit_per_s\": %s, \"connections\": %s, \"requests\": %s, \"cpu_ms_per_1000_connections\": %s}%s\n", \
            jstr(M[i, 2]), jstr(M[i, 3]), jnum(M[i, 4]), jnum(M[i, 5]), jnum(M[i, 6]), jnum(M[i, 7]), jnum(M[i, 8]), \
            M[i, 7] > 0 ? sprintf("%.3f", M[i, 5] / M[i, 6] * 1000 / M[i, 7] * 1000) : "null", i < nmcpu ? "," : "") > o
    printf("    ],\n    \"server_cpu\": [\n") > o
    for (i = 1; i <= nscpu; i++)
        printf("      {\"contestant\": %s, \"scenario\": %s, \"rep\": %s, \"cpu\": %s, \"cpu_unit_per_s\": %s, \"requests\": %s, \"cpu_us_per_request\": %s}%s\n", \
            jstr(SC[i, 2]), jstr(SC[i, 3]), jnum(SC[i, 4]), jnum(SC[i, 5]), jnum(SC[i, 6]), jnum(SC[i, 7]), \
            SC[i, 7] > 0 && SC[i, 6] > 0 ? sprintf("%.3f", SC[i, 5] / SC[i, 6] * 1000000 / SC[i, 7]) : "null", i < nscpu ? "," : "") > o
    printf("    ],\n    \"idle\": [\n") > o
    for (i = 1; i <= nidle; i++)
        printf("      {\"contestant\": %s, \"connections\": %s, \"answered\": %s, \"failed\": %s, \"still_open\": %s, \"vmrss_before_kb\": %s, \"vmrss_kb\": %s, \"vmhwm_kb\": %s, \"master_fds\": %s, \"worker_fds\": %s, \"command\": %s}%s\n", \
            jstr(I[i, 2]), jnum(I[i, 3]), jnum(I[i, 4]), jnum(I[i, 5]), I[i, 6] < 0 ? "null" : jnum(I[i, 6]), jnum(I[i, 7]), jnum(I[i, 8]), jnum(I[i, 9]), \
            jnum(I[i, 10]), jnum(I[i, 11]), jstr(I[i, 12]), i < nidle ? "," : "") > o
    printf("    ]\n  },\n") > o

    printf("  \"up_load\": [\n") > o
    for (i = 1; i <= nul; i++)
        printf("    {\"contestant\": %s, \"run\": %s, \"requests\": %s, \"ok\": %s, \"connect_errors\": %s, \"resets\": %s, \"lost\": %s, \"bad\": %s, \"timeouts\": %s, \"idle_closes\": %s, \"pids\": %s, \"reloads_sent\": %s, \"reloads_done\": %s, \"command\": %s}%s\n", \
            jstr(U[i, 2]), jstr(U[i, 3]), jnum(U[i, 4]), jnum(U[i, 5]), jnum(U[i, 6]), jnum(U[i, 7]), jnum(U[i, 8]), jnum(U[i, 9]), jnum(U[i, 10]), \
            jnum(U[i, 11]), jnum(U[i, 12]), jnum(U[i, 13]), U[i, 14] < 0 ? "null" : jnum(U[i, 14]), jstr(U[i, 15]), i < nul ? "," : "") > o
    printf("  ],\n") > o
    printf("  \"uprun_log\": {\"warnings\": %s, \"errors\": %s, \"reload_failures\": %s, \"respawns\": %s, \"epoll_warnings\": %s, \"epoll_errors\": %s, \"epoll_reload_failures\": %s, \"epoll_respawns\": %s", \
        jnum(meta["log_warn_uprun"]), jnum(meta["log_err_uprun"]), jnum(meta["reload_failures_uprun"]), jnum(meta["respawns_uprun"]), \
        jnum(meta["log_warn_uprun_epoll"]), jnum(meta["log_err_uprun_epoll"]), jnum(meta["reload_failures_uprun_epoll"]), jnum(meta["respawns_uprun_epoll"])) > o
    if (has_base)
        printf(", \"baseline_warnings\": %s, \"baseline_errors\": %s, \"baseline_reload_failures\": %s, \"baseline_respawns\": %s", \
            jnum(meta["log_warn_uprun_base"]), jnum(meta["log_err_uprun_base"]), jnum(meta["reload_failures_uprun_base"]), jnum(meta["respawns_uprun_base"])) > o
    printf("},\n") > o
    printf("  \"notes\": [%s, %s],\n", jstr("wrk and the servers share the machine's " meta["nproc"] " CPUs over loopback"), \
        jstr("wrk counts a server-side close before an answer as a read error and cannot tell it from a lost request; up_load is the authoritative lost-request count")) > o
    printf("  \"failures\": [") > o
    for (i = 1; i <= nfail; i++) printf("%s%s", i > 1 ? ", " : "", jstr(fails[i])) > o
    printf("]\n}\n") > o
    close(o)
}
