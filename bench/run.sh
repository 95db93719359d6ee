#!/usr/bin/env bash
# bench/run.sh: does handing the socket to a worker beat a proxy in front,
# and what does it cost against workers that accept for themselves?
#
#   bench/run.sh [--quick] [--workers N] [--reps N] [--duration S]
#                [--baseline DIR [--compare-only]] [--output PREFIX] [--keep]
#
# Starts every contestant on its own free loopback port with N workers,
# runs wrk against each in turn (interleaved, so that a noisy moment hurts
# every contestant alike), runs the reload storms, the up-load zero-loss
# check and the master cost measurements, stops everything it started and
# writes PREFIX.md and PREFIX.json (default bench/results, or
# bench/results-quick with --quick). With --baseline DIR, up-run from another
# build (DIR) runs too and the report gives up-run ÷ baseline; with
# --compare-only as well, only those two run, in the Keep-Alive and
# connection-per-request scenarios (default output bench/results-compare).
# See bench/README.md.
#
# Exit status: 0 when every contestant started and nothing crashed, whatever
# the numbers; 1 when a contestant failed to start, crashed or stopped
# serving; 2 for a usage error.

set -uo pipefail

# ---------------------------------------------------------------- options

QUICK=0
WORKERS=2
OUTPUT=""
KEEP=0
unset OPT_REPS OPT_DURATION OPT_BASELINE
COMPARE_ONLY=0
usage() {
    cat <<'EOF'
usage: bench/run.sh [--quick] [--workers N] [--reps N] [--duration S]
                    [--baseline DIR [--compare-only]] [--output PREFIX] [--keep]

  --quick          smoke run: 1 repetition of 2 s per scenario, 3 s reload
                   storms, 1,000 idle connections (about 2 minutes); the
                   results go to bench/results-quick.{md,json}
  --workers N      workers for every contestant (default 2)
  --reps N         repetitions of each scenario, 1..100 (default 3, or 1
                   with --quick)
  --duration S     seconds of each Keep-Alive and connection-per-request
                   run, 1..3600 (default 10, or 2 with --quick); the reload
                   storms keep their own length
  --baseline DIR   also run up-run from DIR, the build directory of another
                   tree (DIR/up-run, DIR/up-worker, DIR/examples/hello.so),
                   as the contestant uprun_base, in the Keep-Alive and
                   connection-per-request scenarios; the report adds the
                   ratios up-run ÷ baseline
  --compare-only   with --baseline: only up-run and the baseline, only those
                   two scenarios (no idle memory, storms or up-load); the
                   results go to bench/results-compare.{md,json}
  --output PREFIX  write PREFIX.md and PREFIX.json
                   (default bench/results, bench/results-quick with
                   --quick, bench/results-compare with --compare-only)
  --keep           keep the temporary directory (configs, logs, raw wrk
                   output) instead of removing it
  -h, --help       this text

Environment: BUILD (default build) is where up-run, up-worker,
examples/hello.so and tools/up-load are found.
EOF
}
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --workers) [ $# -ge 2 ] || { usage >&2; exit 2; }; WORKERS=$2; shift ;;
    --workers=*) WORKERS=${1#*=} ;;
    --reps) [ $# -ge 2 ] || { usage >&2; exit 2; }; OPT_REPS=$2; shift ;;
    --reps=*) OPT_REPS=${1#*=} ;;
    --duration) [ $# -ge 2 ] || { usage >&2; exit 2; }; OPT_DURATION=$2; shift ;;
    --duration=*) OPT_DURATION=${1#*=} ;;
    --baseline) [ $# -ge 2 ] || { usage >&2; exit 2; }; OPT_BASELINE=$2; shift ;;
    --baseline=*) OPT_BASELINE=${1#*=} ;;
    --compare-only) COMPARE_ONLY=1 ;;
    --output) [ $# -ge 2 ] || { usage >&2; exit 2; }; OUTPUT=$2; shift ;;
    --output=*) OUTPUT=${1#*=} ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case $WORKERS in '' | *[!0-9]*) echo "bench: --workers wants a number" >&2; exit 2 ;; esac
[ "$WORKERS" -ge 1 ] && [ "$WORKERS" -le 64 ] || { echo "bench: --workers 1..64" >&2; exit 2; }
# A whole number within bounds, without leading zeros (bash would read
# 010 as octal); exits 2 otherwise.
check_count() { # OPTION VALUE MIN MAX
    if ! [[ $2 =~ ^[1-9][0-9]{0,5}$ ]] || ((10#$2 < $3 || 10#$2 > $4)); then
        echo "bench: $1 wants a whole number from $3 to $4, not '$2'" >&2
        exit 2
    fi
}
[ -z "${OPT_REPS+set}" ] || check_count --reps "$OPT_REPS" 1 100
[ -z "${OPT_DURATION+set}" ] || check_count --duration "$OPT_DURATION" 1 3600

# The baseline: a relative DIR is the caller's, resolved before the cd below.
BASE_DIR=""
if [ -n "${OPT_BASELINE+set}" ]; then
    if [ -z "$OPT_BASELINE" ] || [ ! -d "$OPT_BASELINE" ]; then
        echo "bench: --baseline '$OPT_BASELINE' is not a directory" >&2
        exit 2
    fi
    BASE_DIR=$(cd "$OPT_BASELINE" && pwd -P) || exit 2
    for f in up-run up-worker examples/hello.so; do
        [ -f "$BASE_DIR/$f" ] || {
            echo "bench: --baseline $BASE_DIR has no $f: give the build directory of another tree, after its make all" >&2
            exit 2
        }
    done
elif [ "$COMPARE_ONLY" = 1 ]; then
    echo "bench: --compare-only needs --baseline DIR" >&2
    exit 2
fi

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-build}

if [ "$QUICK" = 1 ]; then
    MODE=quick REPS=1 DURATION=2 STORM=3 IDLE_CONNS=1000 WARMUP=1 RELOADS_TIMED=5
    DEFAULT_OUTPUT=$BENCH_DIR/results-quick
else
    MODE=full REPS=3 DURATION=10 STORM=20 IDLE_CONNS=100000 WARMUP=2 RELOADS_TIMED=15
    DEFAULT_OUTPUT=$BENCH_DIR/results
fi
if [ "$COMPARE_ONLY" = 1 ]; then
    MODE=compare
    DEFAULT_OUTPUT=$BENCH_DIR/results-compare
fi
: "${OUTPUT:=$DEFAULT_OUTPUT}"
REPS=${OPT_REPS:-$REPS}
DURATION=${OPT_DURATION:-$DURATION}
CONNS=64              # wrk -c
WRK_THREADS=1         # wrk -t
RELOAD_INTERVAL=0.1   # seconds between two reload signals in a storm
ULOAD_KEEPALIVE=64    # up-load --keepalive
ULOAD_FRESH=2         # up-load --fresh

# The runs must not inherit a development setup. UP_WORKER_BIN would also
# make up-run and the baseline start the same up-worker.
unset UP_ENV UP_BACKEND UP_LOG UP_IDLE_TIMEOUT UP_READ_TIMEOUT UP_DRAIN_TIMEOUT PORT UP_WORKER_BIN

# ---------------------------------------------------------------- helpers

T0=$SECONDS
say() { printf '[%02d:%02d] %s\n' $(((SECONDS - T0) / 60)) $(((SECONDS - T0) % 60)) "$*"; }
warn() { printf 'bench: warning: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

# Quote a command for display, the way one would type it.
shell_join() {
    local out="" a
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+="$a "
        else
            out+="'${a//\'/\'\\\'\'}' "
        fi
    done
    printf '%s' "${out% }"
}

# Shorten temporary paths in recorded commands.
show_cmd() {
    local s
    s=$(shell_join "$@")
    printf '%s' "${s//$TMP/\$TMP}"
}

TAB=$'\t'
RAW=""                         # raw.tsv, the report's only input
raw() { local IFS=$TAB; printf '%s\n' "$*" >>"$RAW"; }

FAILURES=()
fail_note() {
    FAILURES+=("$*")
    warn "$*"
    [ -n "$RAW" ] && raw fail "$*"
}

# ---------------------------------------------------------------- processes

# Every contestant runs in its own session and process group (setsid), so
# that stopping it stops its workers too. Short-lived helpers (wrk, up-load,
# reloaders, the idle client) are tracked by pid.
GROUP_PIDS=()
BG_PIDS=()
TMP=""
CLEANED=0

cleanup() {
    local rc=$?
    [ "$CLEANED" = 1 ] && return
    CLEANED=1
    trap - EXIT INT TERM HUP
    local p g i alive
    for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for g in "${GROUP_PIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
    for i in $(seq 60); do
        alive=0
        for g in "${GROUP_PIDS[@]}"; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
        for p in "${BG_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    if [ $alive = 1 ]; then
        for g in "${GROUP_PIDS[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
        for p in "${BG_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    fi
    wait 2>/dev/null
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
            echo "bench: logs and raw output kept in $TMP" >&2
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM HUP

# start_group LOG CMD...: start CMD in its own session; its pid is LAST_PID.
LAST_PID=""
start_group() {
    local logf=$1
    shift
    setsid "$@" >>"$logf" 2>&1 </dev/null &
    LAST_PID=$!
    GROUP_PIDS+=("$LAST_PID")
}

# start_bg OUT CMD...: start a helper; its pid is LAST_PID.
start_bg() {
    local outf=$1
    shift
    "$@" >"$outf" 2>&1 </dev/null &
    LAST_PID=$!
    BG_PIDS+=("$LAST_PID")
}

alive() { kill -0 "$1" 2>/dev/null; }

# A free TCP port on 127.0.0.1, below the ephemeral range, not picked before.
USED_PORTS=" "
pick_port() {
    local p hex i
    for i in $(seq 500); do
        p=$((20000 + RANDOM % 12000))
        case $USED_PORTS in *" $p "*) continue ;; esac
        hex=$(printf ':%04X ' "$p")
        if ! grep -qs -- "$hex" /proc/net/tcp /proc/net/tcp6; then
            USED_PORTS+="$p "
            PICKED=$p
            return 0
        fi
    done
    die "no free port found"
}

# One GET on a fresh connection; prints the whole answer.
http_get() {
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" >&3
        cat <&3' _ "$1" 2>/dev/null
}

# 200, Content-Length: 11 and the body "Hello World".
serves_hello() {
    local r
    r=$(http_get "$1") || return 1
    [[ $r == HTTP/1.?" 200 "* ]] || return 1
    [[ $r == *$'\r\n\r\nHello World' ]] || return 1
    grep -qi $'^content-length: *11\r$' <<<"$r"
}

# wait_ready NAME PORT LOG PID...: until the port serves Hello World.
wait_ready() {
    local name=$1 port=$2 logf=$3
    shift 3
    local i p
    for i in $(seq 150); do
        for p in "$@"; do
            if ! alive "$p"; then
                tail -n 20 "$logf" >&2
                raw fail "$name did not start (pid $p exited)"
                die "$name did not start (pid $p exited; its log is above)"
            fi
        done
        if serves_hello "$port"; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$logf" >&2
    raw fail "$name did not answer 200 Hello World on port $port within 15 s"
    die "$name did not answer 200 \"Hello World\" on port $port within 15 s (its log is above)"
}

fill_template() { # TEMPLATE OUT KEY=VALUE...
    local tpl=$1 out=$2 expr=() kv
    shift 2
    for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${expr[@]}" "$tpl" >"$out"
}

# ---------------------------------------------------------------- tools

need_tools() {
    local missing=() pkgs=() t
    command -v wrk >/dev/null || { missing+=(wrk); pkgs+=(wrk); }
    if [ "$COMPARE_ONLY" = 0 ]; then # the proxies and the idle client
        command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { missing+=(nginx); pkgs+=(nginx); }
        command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { missing+=(haproxy); pkgs+=(haproxy); }
        command -v cc >/dev/null || { missing+=(cc); pkgs+=(gcc); }
    fi
    command -v setsid >/dev/null || { missing+=(setsid); pkgs+=(util-linux); }
    command -v timeout >/dev/null || { missing+=(timeout); pkgs+=(coreutils); }
    [ ${#missing[@]} = 0 ] && return 0
    say "missing: ${missing[*]}; installing ${pkgs[*]} with apt-get"
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            die "missing ${missing[*]}: not root and no password-less sudo; install them with: sudo apt-get install -y ${pkgs[*]}"
        fi
    fi
    command -v apt-get >/dev/null ||
        die "missing ${missing[*]} and no apt-get here; install the packages ${pkgs[*]} by hand"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${pkgs[@]}"; then
        "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y --no-install-recommends "${pkgs[@]}" ||
            die "apt-get install -y ${pkgs[*]} failed; install them by hand and run again"
    fi
    for t in "${missing[@]}"; do
        command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || die "$t is still missing after apt-get install"
    done
}

# ---------------------------------------------------------------- preflight

PATH=$PATH:/usr/sbin:/sbin
need_tools
UPRUN=$BUILD/up-run
UPWORKER=$BUILD/up-worker
APP=$BUILD/examples/hello.so
UPLOAD=$BUILD/tools/up-load
for f in "$UPRUN" "$UPWORKER" "$APP"; do
    [ -e "$f" ] || die "$f is missing: run make first (make bench does)"
done
HAVE_UPLOAD=1
if [ "$COMPARE_ONLY" = 1 ]; then
    HAVE_UPLOAD=0
elif [ ! -x "$UPLOAD" ]; then
    HAVE_UPLOAD=0
    warn "$UPLOAD is missing: the up-load zero-loss check is skipped"
fi

# Descriptors for the idle connections: as many as allowed (root may raise
# the hard limit), and the idle measurement shares the connections among
# enough processes when one may not hold them all (idle_measure).
# Raise only: a hard limit lowered cannot come back, and the contestants
# (HAProxy's 8,000 fds) inherit it.
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ] && [ "$HARD" -lt $((IDLE_CONNS + 1024)) ]; then
    ulimit -Hn $((IDLE_CONNS + 1024)) 2>/dev/null
fi
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576

TMP=$(mktemp -d "${TMPDIR:-/tmp}/up-bench.XXXXXX") || die "mktemp failed"
RAW=$TMP/raw.tsv
: >"$RAW"

IDLE_BIN=$TMP/idle-conns
RL_BIN=$TMP/reload-latency
if [ "$COMPARE_ONLY" = 0 ]; then
    cc -std=c11 -O2 -Wall -Wextra -o "$IDLE_BIN" "$BENCH_DIR/idle-conns.c" ||
        die "cannot build bench/idle-conns.c"
    cc -std=c11 -O2 -Wall -Wextra -o "$RL_BIN" "$BENCH_DIR/reload-latency.c" ||
        die "cannot build bench/reload-latency.c"
fi

if [ -r /proc/self/schedstat ]; then # see proc_cpu
    CPU_UNIT=1000000000
else
    CPU_UNIT=$(getconf CLK_TCK 2>/dev/null || echo 100)
fi
NPROC=$(nproc)
read -r LOAD_START _ </proc/loadavg

first_line() { "$@" 2>&1 | head -n 1; }
raw meta mode "$MODE"
raw meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
raw meta cpu_model "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
raw meta nproc "$NPROC"
raw meta kernel "$(uname -r)"
raw meta distro "$( (. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}") || echo unknown)"
if [ "$COMPARE_ONLY" = 0 ]; then
    raw meta v_nginx "$(first_line nginx -v)"
    raw meta v_haproxy "$(first_line haproxy -v)"
fi
raw meta v_wrk "$(first_line wrk -v)"
raw meta v_uprun "$(first_line "$UPRUN" --version)"
raw meta v_cc "$(first_line cc --version)"
raw meta git "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"

# The baseline's version: git describe of the tree it was built from, when
# DIR is that tree's own build directory (build, or build/san); a copy of
# the binaries anywhere else, even inside a repository, is named by DIR.
base_describe() { # DIR
    local top
    top=$(git -C "$1" rev-parse --show-toplevel 2>/dev/null) || return 1
    case $1 in "$top/build" | "$top/build/san") ;; *) return 1 ;; esac
    git -C "$top" describe --always --dirty 2>/dev/null
}
if [ -n "$BASE_DIR" ]; then
    BASE_DESC=$(base_describe "$BASE_DIR") || BASE_DESC=$BASE_DIR
    raw meta compare_only "$COMPARE_ONLY"
    raw meta baseline_dir "$BASE_DIR"
    raw meta git_base "$BASE_DESC"
    raw meta v_uprun_base "$(first_line "$BASE_DIR/up-run" --version)"
fi
raw meta workers "$WORKERS"
raw meta reps "$REPS"
raw meta duration_s "$DURATION"
raw meta storm_s "$STORM"
raw meta reload_interval_ms 100
raw meta idle_conns "$IDLE_CONNS"
raw meta wrk_threads "$WRK_THREADS"
raw meta wrk_connections "$CONNS"
raw meta nofile "$NOFILE"
raw meta load_start "$LOAD_START"
raw meta uload_cmd "$UPLOAD --port PORT --keepalive $ULOAD_KEEPALIVE --fresh $ULOAD_FRESH --seconds $STORM --quiet"

if [ "$COMPARE_ONLY" = 1 ]; then
    say "up benchmark ($MODE): up-run against the baseline $BASE_DESC, $WORKERS workers each, wrk -t$WRK_THREADS -c$CONNS, $REPS x ${DURATION}s per scenario"
else
    say "up benchmark ($MODE): $WORKERS workers per contestant, wrk -t$WRK_THREADS -c$CONNS, $REPS x ${DURATION}s per scenario, ${STORM}s reload storms, $IDLE_CONNS idle connections"
    [ -z "$BASE_DIR" ] || say "baseline: up-run from $BASE_DIR ($BASE_DESC), in the Keep-Alive and connection-per-request scenarios"
fi
say "machine: $NPROC CPUs, kernel $(uname -r), load average $LOAD_START; temp dir $TMP"
if awk -v l="$LOAD_START" -v n="$NPROC" 'BEGIN { exit !(l > n / 2) }'; then
    warn "the machine is busy (load average $LOAD_START on $NPROC CPUs): numbers will be noisy"
fi

# ---------------------------------------------------------------- contestants

declare -A PORT_OF LABEL_OF MASTER_OF PIDS_OF LOG_OF CTL_OF UPRUN_OF BACKEND_OF KIND_OF DEAD
CONTESTANTS=()
BACKEND_PIDS=""

add_contestant() { # ID KIND LABEL PORT LOG MASTERPID PIDS COMMAND
    CONTESTANTS+=("$1")
    KIND_OF[$1]=$2
    LABEL_OF[$1]=$3
    PORT_OF[$1]=$4
    LOG_OF[$1]=$5
    MASTER_OF[$1]=$6
    PIDS_OF[$1]=$7
    DEAD[$1]=0
}

start_workers() { # PORT LOG -> PIDS (space-separated) in STARTED_PIDS
    local port=$1 logf=$2 i
    STARTED_PIDS=""
    for i in $(seq "$WORKERS"); do
        start_group "$logf" "$UPWORKER" --listen "127.0.0.1:$port" "$APP"
        STARTED_PIDS+="$LAST_PID "
    done
    STARTED_PIDS=${STARTED_PIDS% }
}

# 1. no master: N up-worker sharing a port with SO_REUSEPORT
if [ "$COMPARE_ONLY" = 0 ]; then
    pick_port; P=$PICKED
    start_workers "$P" "$TMP/nomaster.log"
    CMD="$(show_cmd "$UPWORKER" --listen "127.0.0.1:$P" "$APP") # x $WORKERS, SO_REUSEPORT"
    add_contestant nomaster workers "up-worker ×$WORKERS (no master, SO_REUSEPORT)" "$P" "$TMP/nomaster.log" "" "$STARTED_PIDS" "$CMD"
    raw contestant nomaster "${LABEL_OF[nomaster]}" "$CMD"
    wait_ready nomaster "$P" "$TMP/nomaster.log" $STARTED_PIDS
fi

# 2. up-run, default back end (io_uring), the baseline's up-run the same
# way, and --backend epoll
start_uprun() { # ID LABEL UP-RUN APP EXTRA-ARGS...
    local id=$1 label=$2 bin=$3 app=$4
    shift 4
    pick_port
    local port=$PICKED logf=$TMP/$id.log ctl=$TMP/$id.sock
    local cmd=("$bin" -n "$WORKERS" "$@" --listen "127.0.0.1:$port" --control "$ctl")
    # As root, up-run wants --allow-root (a baseline from before it does
    # not know the option, and needs none).
    if [ "$(id -u)" = 0 ] && "$bin" --help 2>/dev/null | grep -q -- --allow-root; then
        cmd+=(--allow-root)
    fi
    cmd+=("$app")
    start_group "$logf" "${cmd[@]}"
    local pid=$LAST_PID
    CTL_OF[$id]=$ctl
    UPRUN_OF[$id]=$bin # its own up-run answers its status queries
    wait_ready "$id" "$port" "$logf" "$pid"
    local backend
    backend=$("$bin" status --control "$ctl" 2>/dev/null | sed -n 's/.*backend=\([a-z_]*\).*/\1/p' | head -n 1)
    [ -n "$backend" ] || backend=unknown
    BACKEND_OF[$id]=$backend
    add_contestant "$id" uprun "$label ($backend)" "$port" "$logf" "$pid" "$pid" "$(show_cmd "${cmd[@]}")"
    raw contestant "$id" "${LABEL_OF[$id]}" "$(show_cmd "${cmd[@]}")"
    raw meta "backend_$id" "$backend"
}
start_uprun uprun "up-run -n $WORKERS" "$UPRUN" "$APP"
case ${LABEL_OF[uprun]} in
*io_uring*) ;;
*) warn "up-run chose ${LABEL_OF[uprun]#*(} instead of io_uring: io_uring is not available here" ;;
esac
if [ -n "$BASE_DIR" ]; then
    # The baseline serves its own examples/hello.so: an app is built against
    # the app ABI of its tree, and an up-worker refuses an app of another
    # ABI version, so the current hello.so might not even load there. Each
    # build thus runs whole, app included; both answer the same Hello World
    # (wait_ready checks it). Its up-run starts the up-worker beside itself.
    start_uprun uprun_base "up-run baseline ($BASE_DESC) -n $WORKERS" "$BASE_DIR/up-run" "$BASE_DIR/examples/hello.so"
    [ "${BACKEND_OF[uprun_base]}" = "${BACKEND_OF[uprun]}" ] ||
        warn "the baseline uses ${BACKEND_OF[uprun_base]} and up-run ${BACKEND_OF[uprun]}: the ratios compare back ends too"
fi
[ "$COMPARE_ONLY" = 1 ] || start_uprun uprun_epoll "up-run -n $WORKERS --backend epoll" "$UPRUN" "$APP" --backend epoll
# The cost of the access log: a line per request to a file, as an operator
# would run it.
[ "$COMPARE_ONLY" = 1 ] || start_uprun uprun_alog "up-run -n $WORKERS --access-log FILE" "$UPRUN" "$APP" --access-log "$TMP/access.log"

# 3. nginx return 200
start_nginx() { # ID LABEL TEMPLATE [BACKEND_PORT]
    local id=$1 label=$2 tpl=$3 bport=${4:-0}
    pick_port
    local port=$PICKED dir=$TMP/$id
    mkdir -p "$dir"
    fill_template "$BENCH_DIR/$tpl" "$dir/nginx.conf" WORKERS="$WORKERS" PORT="$port" \
        BACKEND_PORT="$bport" DIR="$dir" NOFILE="$NOFILE"
    local cmd=(nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log")
    start_group "$dir/stderr.log" "${cmd[@]}"
    local pid=$LAST_PID
    wait_ready "$id" "$port" "$dir/stderr.log" "$pid"
    add_contestant "$id" nginx "$label" "$port" "$dir/error.log" "$pid" "$pid" "$(show_cmd "${cmd[@]}")"
    raw contestant "$id" "$label" "$(show_cmd "${cmd[@]}") # bench/$tpl"
}
[ "$COMPARE_ONLY" = 1 ] || start_nginx nginx "nginx return 200 (worker_processes $WORKERS)" nginx-return.conf.in

# 4./5. the proxies share one set of N up-worker behind them
if [ "$COMPARE_ONLY" = 0 ]; then
    pick_port; BACKEND_PORT=$PICKED
    start_workers "$BACKEND_PORT" "$TMP/backend.log"
    BACKEND_PIDS=$STARTED_PIDS
    wait_ready backend-workers "$BACKEND_PORT" "$TMP/backend.log" $BACKEND_PIDS
    raw meta backend_workers "$(show_cmd "$UPWORKER" --listen "127.0.0.1:$BACKEND_PORT" "$APP") # x $WORKERS"

    start_nginx nginx_proxy "nginx proxy → up-worker ×$WORKERS (upstream keepalive)" nginx-proxy.conf.in "$BACKEND_PORT"
fi

start_haproxy() {
    local id=haproxy
    pick_port
    local port=$PICKED dir=$TMP/$id
    mkdir -p "$dir"
    fill_template "$BENCH_DIR/haproxy.cfg.in" "$dir/haproxy.cfg" WORKERS="$WORKERS" PORT="$port" \
        BACKEND_PORT="$BACKEND_PORT" DIR="$dir"
    local cmd=(haproxy -W -db -f "$dir/haproxy.cfg")
    start_group "$dir/stderr.log" "${cmd[@]}"
    local pid=$LAST_PID
    wait_ready "$id" "$port" "$dir/stderr.log" "$pid"
    add_contestant "$id" haproxy "HAProxy -W nbthread $WORKERS → up-worker ×$WORKERS (http-reuse)" \
        "$port" "$dir/stderr.log" "$pid" "$pid" "$(show_cmd "${cmd[@]}")"
    raw contestant "$id" "${LABEL_OF[$id]}" "$(show_cmd "${cmd[@]}") # bench/haproxy.cfg.in"
}
[ "$COMPARE_ONLY" = 1 ] || start_haproxy

for c in "${CONTESTANTS[@]}"; do
    say "started ${LABEL_OF[$c]} on 127.0.0.1:${PORT_OF[$c]}"
done
[ "$COMPARE_ONLY" = 1 ] || say "proxy back ends: up-worker ×$WORKERS on 127.0.0.1:$BACKEND_PORT"

# Is a contestant still whole? Records a failure once and marks it dead.
check_alive() { # ID WHEN
    local c=$1 when=$2 p
    [ "${DEAD[$c]}" = 1 ] && return 1
    local pids=${PIDS_OF[$c]}
    case $c in nginx_proxy | haproxy) pids+=" $BACKEND_PIDS" ;; esac
    for p in $pids; do
        if ! alive "$p"; then
            DEAD[$c]=1
            fail_note "${LABEL_OF[$c]}: process $p is gone after $when"
            tail -n 20 "${LOG_OF[$c]}" >&2
            return 1
        fi
    done
    return 0
}

# ---------------------------------------------------------------- wrk runs

# CPU time in CPU_UNIT per second. The scheduler's own count, in ns
# (/proc/PID/task/*/schedstat: time on a CPU, per thread), where the kernel
# has it: utime+stime in /proc/PID/stat are sampled at the clock tick, and
# on a VM seen here they gave a master or a worker that sleeps and wakes for
# every connection a seventh of what schedstat and `perf stat -e task-clock`
# agreed on, while a process that spins was counted right. The fallback is
# those ticks. A thread that exited takes its schedstat along: this is for
# runs in which no process or thread of the contestant ends.
proc_cpu() { # PID -> its CPU time so far, in CPU_UNIT per second
    local s rest f t total=0
    if [ "$CPU_UNIT" = 1000000000 ]; then
        [ -d "/proc/$1/task" ] || { echo -1; return; }
        for f in /proc/"$1"/task/*/schedstat; do
            read -r t _ 2>/dev/null <"$f" && total=$((total + t))
        done
        echo "$total"
        return
    fi
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo -1; return; }
    rest=${s##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $((${12} + ${13}))
}

# The processes of a contestant (PIDS_OF, plus the proxies' back ends) and
# all their descendants: nginx's and up-run's workers are children of their
# master, and an up-run's workers change with every reload.
tree_pids() { # PIDS... -> the PIDs and their descendants
    local -A parent=()
    local d s rest pid ppid
    for d in /proc/[0-9]*; do
        s=$(cat "$d/stat" 2>/dev/null) || continue
        rest=${s##*) }
        pid=${d#/proc/}
        ppid=${rest#* }
        parent[$pid]=${ppid%% *}
    done
    local out=" $* " grew=1
    while [ "$grew" = 1 ]; do
        grew=0
        for pid in "${!parent[@]}"; do
            case $out in *" $pid "*) continue ;; esac
            case $out in *" ${parent[$pid]} "*) out+="$pid " grew=1 ;; esac
        done
    done
    echo $out
}

# Everything a contestant's processes ran on the CPUs, in CPU_UNIT per
# second: what serving cost it, apart from wrk. A process that exits during
# the run takes its time along, so this is for runs without reloads.
server_cpu() { # ID
    local c=$1 pids p t total=0
    pids=${PIDS_OF[$c]}
    case $c in nginx_proxy | haproxy) pids+=" $BACKEND_PIDS" ;; esac
    [ -n "${pids// /}" ] || { echo -1; return; }
    for p in $(tree_pids $pids); do
        t=$(proc_cpu "$p")
        [ "$t" -ge 0 ] && total=$((total + t))
    done
    echo "$total"
}

proc_status_kb() { # PID FIELD
    awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status" 2>/dev/null
}

uprun_stat() { # ID KEY -> a counter from up-run status (asked with its own up-run)
    "${UPRUN_OF[$1]}" status --control "${CTL_OF[$1]}" 2>/dev/null |
        tr ' ' '\n' | sed -n "s/^$2=\([0-9]*\)$/\1/p" | head -n 1
}

RELOADER_PID=""
# Send SIGNAL to PID every RELOAD_INTERVAL until stopped, counting in
# COUNTFILE. It waits with read -t on a FIFO nobody writes to, so that the
# loop forks nothing (a busy machine makes fork+exec of sleep slow).
start_reloader() { # PID SIGNAL COUNTFILE
    local pid=$1 sig=$2 cnt=$3 fifo=$TMP/tick.fifo
    [ -p "$fifo" ] || mkfifo "$fifo" || die "mkfifo $fifo failed"
    (
        trap 'exit 0' TERM
        exec 7<>"$fifo"
        n=0
        echo 0 >"$cnt"
        while kill "-$sig" "$pid" 2>/dev/null; do
            n=$((n + 1))
            echo "$n" >"$cnt"
            read -r -t "$RELOAD_INTERVAL" -u 7 _
        done
    ) </dev/null &
    RELOADER_PID=$!
    BG_PIDS+=("$RELOADER_PID")
}

stop_reloader() {
    [ -n "$RELOADER_PID" ] || return 0
    kill -TERM "$RELOADER_PID" 2>/dev/null
    wait "$RELOADER_PID" 2>/dev/null
    RELOADER_PID=""
}

reload_signal() { # ID -> the signal that reloads it
    case ${KIND_OF[$1]} in
    uprun | haproxy) echo USR2 ;;
    nginx) echo HUP ;;
    esac
}

RUN_NO=0
RUN_TOTAL=0
fmt_int() { printf "%'d" "${1%.*}" 2>/dev/null || printf '%s' "${1%.*}"; }

# wrk_run ID SCENARIO REP SECONDS: SCENARIO is ka, close, storm-ka,
# storm-close, steady-ka or steady-close (steady = the storm's length
# without reloads). Appends a "run" line to raw.tsv.
wrk_run() {
    local c=$1 sc=$2 rep=$3 dur=$4
    RUN_NO=$((RUN_NO + 1))
    check_alive "$c" "the previous run" || return 0
    local port=${PORT_OF[$c]} out=$TMP/wrk-$c-$sc-$rep.txt
    local cmd=(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${dur}s" --timeout 2s --latency)
    case $sc in *close) cmd+=(-H 'Connection: close') ;; esac
    cmd+=("http://127.0.0.1:$port/")
    local load1 cpu0=-1 cpu1=-1 acc0="" acc1="" sent=0 done0="" done1="" mpid=${MASTER_OF[$c]}
    local scpu0=-1 scpu1=-1
    read -r load1 _ </proc/loadavg
    case $sc in ka | close) scpu0=$(server_cpu "$c") ;; esac
    if [ "${KIND_OF[$c]}" = uprun ]; then
        cpu0=$(proc_cpu "$mpid")
        acc0=$(uprun_stat "$c" accepted)
        done0=$(uprun_stat "$c" reloads)
    fi
    start_bg "$out" "${cmd[@]}"
    local wpid=$LAST_PID
    case $sc in storm-*) start_reloader "$mpid" "$(reload_signal "$c")" "$TMP/reloads.cnt" ;; esac
    wait "$wpid"
    local wrc=$?
    case $sc in storm-*)
        stop_reloader
        sent=$(cat "$TMP/reloads.cnt" 2>/dev/null || echo 0)
        ;;
    esac
    case $sc in ka | close) scpu1=$(server_cpu "$c") ;; esac
    if [ "${KIND_OF[$c]}" = uprun ]; then
        cpu1=$(proc_cpu "$mpid")
        acc1=$(uprun_stat "$c" accepted)
        done1=$(uprun_stat "$c" reloads)
    fi
    local parsed ok rps requests secs ec er ew et n2 p50 p99
    parsed=$(awk -f "$BENCH_DIR/parse-wrk.awk" "$out")
    IFS=$TAB read -r ok rps requests secs ec er ew et n2 p50 p99 <<<"$parsed"
    local rdone=-1
    [ -n "$done0" ] && [ -n "$done1" ] && rdone=$((done1 - done0))
    if [ "$ok" != 1 ]; then
        fail_note "wrk failed against ${LABEL_OF[$c]} ($sc, rep $rep, exit $wrc): $(head -c 300 "$out" | tr '\n' ' ')"
        check_alive "$c" "$sc run $rep"
        return 0
    fi
    raw run "$c" "$sc" "$rep" "$rps" "$requests" "$secs" "$ec" "$er" "$ew" "$et" "$n2" "$p50" "$p99" \
        "$load1" "$sent" "$rdone" "$(show_cmd "${cmd[@]}")"
    if [ "$sc" = close ] && [ "${KIND_OF[$c]}" = uprun ] && [ "$cpu0" -ge 0 ] && [ "$cpu1" -ge 0 ]; then
        local conns=$((requests + ec + er + ew + et))
        [ -n "$acc0" ] && [ -n "$acc1" ] && conns=$((acc1 - acc0))
        raw mcpu "$c" "$sc" "$rep" "$((cpu1 - cpu0))" "$CPU_UNIT" "$conns" "$requests"
    fi
    if [ "$scpu0" -ge 0 ] && [ "$scpu1" -ge "$scpu0" ]; then
        raw scpu "$c" "$sc" "$rep" "$((scpu1 - scpu0))" "$CPU_UNIT" "$requests"
    fi
    local errs=$((ec + er + ew + et))
    local extra=""
    case $sc in storm-*) extra=", $sent reloads sent" ;; esac
    [ "$rdone" -ge 0 ] && case $sc in storm-*) extra+=" ($rdone done)" ;; esac
    say "($RUN_NO/$RUN_TOTAL) $sc rep $rep/$REPS ${LABEL_OF[$c]}: $(fmt_int "$rps") req/s, $(fmt_int "$requests") requests, socket errors $errs (c$ec r$er w$ew t$et), non-2xx $n2$extra"
    check_alive "$c" "$sc run $rep"
}

# Rotate the contestants' order from one repetition to the next.
rotated() { # REP IDS...
    local rep=$1
    shift
    local ids=("$@") n=$# i
    for ((i = 0; i < n; i++)); do
        printf '%s ' "${ids[$(((i + rep - 1) % n))]}"
    done
}

STORM_IDS=(uprun nginx haproxy)
[ "$COMPARE_ONLY" = 1 ] && STORM_IDS=()
RUN_TOTAL=$((REPS * 2 * ${#CONTESTANTS[@]}))
[ ${#STORM_IDS[@]} = 0 ] || RUN_TOTAL=$((RUN_TOTAL + REPS * 2 * (${#STORM_IDS[@]} + 1)))

# ---------------------------------------------------------------- warm-up

say "warm-up: ${WARMUP}s of wrk against each contestant"
for c in "${CONTESTANTS[@]}"; do
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:${PORT_OF[$c]}/" >"$TMP/warmup-$c.txt" 2>&1 </dev/null &
    wp=$!
    BG_PIDS+=("$wp")
    wait "$wp"
    check_alive "$c" "the warm-up"
done

# ---------------------------------------------------------------- 1, 2: throughput and latency

say "scenarios Keep-Alive and connection-per-request: $REPS x ${DURATION}s each"
for rep in $(seq "$REPS"); do
    for sc in ka close; do
        for c in $(rotated "$rep" "${CONTESTANTS[@]}"); do
            wrk_run "$c" "$sc" "$rep" "$DURATION"
        done
    done
done

# ---------------------------------------------------------------- master memory with idle connections

# IDLE_CONNS Keep-Alive connections, each answered once and then held idle
# by the workers of an up-run of its own (the contestant's back end),
# started fresh: the scenarios before grew the contestants' heaps and
# buffer pools under load, which would hide what idle connections cost.
# One process holds no more descriptors than the open-file limit, so the
# connections are shared among as many workers (at least WORKERS) and as
# many idle-conns clients as that takes: 100,000 under a limit of 20,000
# are 6 workers and 6 clients.
idle_measure() { # ID
    local c=$1 backend=${BACKEND_OF[$1]}
    local each=$((NOFILE * 9 / 10 - 64)) i w
    local n=$(((IDLE_CONNS + each - 1) / each))
    local workers=$((n > WORKERS ? n : WORKERS)) clients=$n
    pick_port
    local port=$PICKED logf=$TMP/idle-$c-up.log
    local cmd=("$UPRUN" -n "$workers" --backend "$backend" --listen "127.0.0.1:$port")
    [ "$(id -u)" = 0 ] && cmd+=(--allow-root)
    cmd+=("$APP")
    start_group "$logf" "${cmd[@]}"
    local mpid=$LAST_PID
    wait_ready "idle up-run ($backend)" "$port" "$logf" "$mpid"
    for i in $(seq 100); do
        [ "$(cat /proc/"$mpid"/task/*/children 2>/dev/null | wc -w)" -eq "$workers" ] && break
        sleep 0.1
    done
    local rss0 wrss0=0
    rss0=$(proc_status_kb "$mpid" VmRSS)
    for w in $(cat /proc/"$mpid"/task/*/children 2>/dev/null); do
        wrss0=$((wrss0 + $(proc_status_kb "$w" VmRSS)))
    done

    local k slice=$(((IDLE_CONNS + clients - 1) / clients)) first=0 ipids=() outs=()
    for k in $(seq "$clients"); do
        local m=$((IDLE_CONNS - first < slice ? IDLE_CONNS - first : slice))
        start_bg "$TMP/idle-$c-$k.txt" "$IDLE_BIN" 127.0.0.1 "$port" "$m" "$first"
        ipids+=("$LAST_PID")
        outs+=("$TMP/idle-$c-$k.txt")
        first=$((first + m))
    done
    local out ready
    for i in $(seq 1800); do
        ready=0
        for out in "${outs[@]}"; do grep -q '^idle-conns: ready' "$out" && ready=$((ready + 1)); done
        [ "$ready" -eq "$clients" ] && break
        sleep 0.1
    done
    local ok=0 failed=0 still=0 v
    for out in "${outs[@]}"; do
        if ! grep -q '^idle-conns: ready' "$out"; then
            fail_note "idle-conns against the idle up-run ($backend) did not get ready: $(tr '\n' ' ' <"$out")"
            kill -TERM "${ipids[@]}" 2>/dev/null
            wait "${ipids[@]}" 2>/dev/null
            kill -TERM -- "-$mpid" 2>/dev/null
            return 0
        fi
        v=$(sed -n 's/^idle-conns: ready.* ok=\([0-9]*\).*/\1/p' "$out")
        ok=$((ok + ${v:-0}))
        v=$(sed -n 's/^idle-conns: ready.* failed=\([0-9]*\).*/\1/p' "$out")
        failed=$((failed + ${v:-0}))
    done
    # Longer than the second after which idle connections slim.
    sleep 2.5
    local rss hwm mfds wfds=0 wrss=0
    rss=$(proc_status_kb "$mpid" VmRSS)
    hwm=$(proc_status_kb "$mpid" VmHWM)
    mfds=$(ls "/proc/$mpid/fd" 2>/dev/null | wc -l)
    for w in $(cat /proc/"$mpid"/task/*/children 2>/dev/null); do
        wfds=$((wfds + $(ls "/proc/$w/fd" 2>/dev/null | wc -l)))
        wrss=$((wrss + $(proc_status_kb "$w" VmRSS)))
    done
    raw meta "worker_idle_bytes_$c" "$(((wrss - wrss0) * 1024 / IDLE_CONNS))"
    raw meta "idle_workers" "$workers"
    raw meta "idle_clients" "$clients"
    kill -USR1 "${ipids[@]}" 2>/dev/null
    for out in "${outs[@]}"; do
        for i in $(seq 100); do
            grep -q '^idle-conns: check' "$out" && break
            sleep 0.1
        done
        v=$(sed -n 's/^idle-conns: check open=\([0-9]*\).*/\1/p' "$out")
        if [ -z "$v" ] || [ "$still" -lt 0 ]; then still=-1; else still=$((still + v)); fi
    done
    kill -TERM "${ipids[@]}" 2>/dev/null
    wait "${ipids[@]}" 2>/dev/null
    kill -TERM -- "-$mpid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 -- "-$mpid" 2>/dev/null || break
        sleep 0.1
    done
    local shown
    shown="$(show_cmd "${cmd[@]}") & $(show_cmd "$IDLE_BIN" 127.0.0.1 "$port" "$slice" FIRST)"
    [ "$clients" -gt 1 ] && shown+=" × $clients (FIRST = 0, $slice, ...)"
    raw idle "$c" "$IDLE_CONNS" "$ok" "$failed" "$still" "${rss0:--1}" "${rss:--1}" \
        "${hwm:--1}" "$mfds" "$wfds" "$shown"
    say "idle: up-run ($backend, $workers workers): $ok/$IDLE_CONNS connections answered and held ($still still open at the check); master VmRSS ${rss0} kB before, ${rss} kB with them (VmHWM ${hwm} kB), master fds $mfds, worker fds $wfds; workers VmRSS ${wrss0} kB before, ${wrss} kB with them ($(((wrss - wrss0) * 1024 / IDLE_CONNS)) B per connection)"
}

# --compare-only skips this and the storms: a comparison of two builds
# runs the two scenarios above and nothing else.
if [ "$COMPARE_ONLY" = 0 ]; then
    say "master memory with $IDLE_CONNS idle Keep-Alive connections held by the workers"
    idle_measure uprun
    idle_measure uprun_epoll
fi

# ---------------------------------------------------------------- reload latency

# Signal -> first answer from the new generation, as a client sees it: an
# up-run of its own serving examples/echo.so (its answers name their
# generation), while every contestant waits idle.
reload_latency() {
    local app=$BUILD/examples/echo.so
    if [ ! -e "$app" ]; then
        fail_note "$app is missing: the reload latency is not measured"
        return 0
    fi
    pick_port
    local port=$PICKED logf=$TMP/reload-latency-up.log out=$TMP/reload-latency.txt i
    local cmd=("$UPRUN" -n "$WORKERS" --listen "127.0.0.1:$port")
    [ "$(id -u)" = 0 ] && cmd+=(--allow-root)
    cmd+=("$app")
    start_group "$logf" "${cmd[@]}"
    local pid=$LAST_PID
    "$RL_BIN" "$pid" "$port" "$RELOADS_TIMED" >"$out" 2>&1
    kill -TERM -- "-$pid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.1
    done
    local line
    line=$(grep '^reload-latency: n=' "$out")
    if [ -z "$line" ]; then
        fail_note "reload latency: $(tr '\n' ' ' <"$out")"
        return 0
    fi
    local med min max
    med=$(sed -n 's/.* median=\([0-9.]*\).*/\1/p' <<<"$line")
    min=$(sed -n 's/.* min=\([0-9.]*\).*/\1/p' <<<"$line")
    max=$(sed -n 's/.* max=\([0-9.]*\).*/\1/p' <<<"$line")
    raw meta reload_latency_n "$RELOADS_TIMED"
    raw meta reload_latency_median_ms "$med"
    raw meta reload_latency_min_ms "$min"
    raw meta reload_latency_max_ms "$max"
    raw meta reload_latency_cmd "$(show_cmd "${cmd[@]}") & $(show_cmd "$RL_BIN" PID "$port" "$RELOADS_TIMED")"
    say "reload latency: signal to the first answer from the new generation ($WORKERS workers, $RELOADS_TIMED reloads): median $med ms, min $min, max $max"
}

if [ "$COMPARE_ONLY" = 0 ]; then
    say "reload latency: $RELOADS_TIMED reloads of an up-run serving examples/echo.so"
    reload_latency
fi

# ---------------------------------------------------------------- 3: reload storms

if [ ${#STORM_IDS[@]} -gt 0 ]; then
    say "reload storms: a reload every 100 ms for ${STORM}s, $REPS x (Keep-Alive, connection per request)"
    for rep in $(seq "$REPS"); do
        for mode in ka close; do
            for c in $(rotated "$rep" "${STORM_IDS[@]}"); do
                if [ "$c" = uprun ]; then
                    wrk_run "$c" "steady-$mode" "$rep" "$STORM"
                fi
                wrk_run "$c" "storm-$mode" "$rep" "$STORM"
                sleep 0.5 # let the last reload settle before the next contestant runs
            done
        done
    done
fi

# ---------------------------------------------------------------- up-load: the authoritative zero-loss count

uload_run() { # ID MODE(steady|storm)
    local c=$1 mode=$2
    check_alive "$c" "the storms" || return 0
    local port=${PORT_OF[$c]} out=$TMP/upload-$c-$mode.txt
    local cmd=("$UPLOAD" --port "$port" --keepalive "$ULOAD_KEEPALIVE" --fresh "$ULOAD_FRESH" --seconds "$STORM" --quiet)
    local done0="" done1="" sent=0 rdone=-1
    [ "${KIND_OF[$c]}" = uprun ] && done0=$(uprun_stat "$c" reloads)
    start_bg "$out" "${cmd[@]}"
    local upid=$LAST_PID
    [ "$mode" = storm ] && start_reloader "${MASTER_OF[$c]}" "$(reload_signal "$c")" "$TMP/reloads.cnt"
    wait "$upid"
    local urc=$?
    if [ "$mode" = storm ]; then
        stop_reloader
        sent=$(cat "$TMP/reloads.cnt" 2>/dev/null || echo 0)
    fi
    [ "${KIND_OF[$c]}" = uprun ] && done1=$(uprun_stat "$c" reloads)
    [ -n "$done0" ] && [ -n "$done1" ] && rdone=$((done1 - done0))
    local line
    line=$(grep '^up-load: requests=' "$out" | tail -n 1)
    if [ -z "$line" ]; then
        fail_note "up-load against ${LABEL_OF[$c]} ($mode) printed no summary (exit $urc): $(head -c 300 "$out" | tr '\n' ' ')"
        return 0
    fi
    local k v vals=()
    for k in requests ok connect_errors resets lost bad timeouts idle_closes pids; do
        v=$(sed -n "s/.* $k=\([0-9]*\).*/\1/p" <<<"$line" | head -n 1)
        vals+=("${v:-0}")
    done
    raw uload "$c" "$mode" "${vals[@]}" "$sent" "$rdone" "$(show_cmd "${cmd[@]}")"
    local extra=""
    [ "$mode" = storm ] && extra=", $sent reloads sent"
    [ "$mode" = storm ] && [ "$rdone" -ge 0 ] && extra+=" ($rdone done)"
    say "up-load $mode ${LABEL_OF[$c]}: ${line#up-load: }$extra"
    sleep 0.5
    check_alive "$c" "the up-load $mode run"
}

if [ "$HAVE_UPLOAD" = 1 ]; then
    say "up-load (checks every answer) during ${STORM}s: up-run without and with a reload storm, then nginx and HAProxy storms"
    [ "$QUICK" = 1 ] || uload_run uprun steady
    uload_run uprun storm
    uload_run nginx storm
    uload_run haproxy storm
fi

# ---------------------------------------------------------------- crash checks

for c in "${CONTESTANTS[@]}"; do
    check_alive "$c" "the benchmark"
    case ${KIND_OF[$c]} in
    uprun)
        n=$(grep -cE 'exited unexpectedly|killed by signal|dumped core' "${LOG_OF[$c]}")
        [ "$n" -gt 0 ] && fail_note "${LABEL_OF[$c]}: $n worker crash line(s) in its log: $(grep -m3 -E 'exited unexpectedly|killed by signal|dumped core' "${LOG_OF[$c]}" | tr '\n' ' ')"
        raw meta "log_warn_$c" "$(grep -c ': warn: ' "${LOG_OF[$c]}")"
        raw meta "log_err_$c" "$(grep -cE ': (err|error): ' "${LOG_OF[$c]}")"
        raw meta "reload_failures_$c" "$(uprun_stat "$c" reload_failures)"
        raw meta "respawns_$c" "$(uprun_stat "$c" respawns)"
        ;;
    nginx)
        n=$(grep -c 'exited on signal' "${LOG_OF[$c]}" 2>/dev/null)
        [ "${n:-0}" -gt 0 ] && fail_note "${LABEL_OF[$c]}: $n worker crash line(s) in its error log"
        ;;
    esac
done

if [ -n "${PORT_OF[uprun_alog]:-}" ]; then
    say "access log: $(wc -l <"$TMP/access.log") lines in the file; up-run status says: $("$UPRUN" status --control "${CTL_OF[uprun_alog]}" 2>/dev/null | grep '^access log' || echo none)"
fi

read -r LOAD_END _ </proc/loadavg
raw meta load_end "$LOAD_END"
raw meta elapsed_s "$((SECONDS - T0))"

# ---------------------------------------------------------------- report

awk -F'\t' -v md="$OUTPUT.md" -v json="$OUTPUT.json" -f "$BENCH_DIR/report.awk" "$RAW" ||
    die "report.awk failed (raw data in $RAW)"
[ "$KEEP" = 1 ] && cp "$RAW" "$OUTPUT.raw.tsv"
say "wrote $OUTPUT.md and $OUTPUT.json"
sed -n '/^## Targets/,/^## /p' "$OUTPUT.md" | sed '$d'

if [ ${#FAILURES[@]} -gt 0 ]; then
    printf 'bench: %d failure(s):\n' ${#FAILURES[@]} >&2
    printf '  - %s\n' "${FAILURES[@]}" >&2
    exit 1
fi
say "done in $((SECONDS - T0)) s"
exit 0
