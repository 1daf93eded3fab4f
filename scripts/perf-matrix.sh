#!/usr/bin/env bash
# The side-by-side performance table in one command: our shipped server and bench
# (`iproto serve --echo`, `iproto bench`), the lean tokio yardstick (shared/ceiling) and
# go-iproto's own pair (shared/peers/go), plus mixed pairs that measure each of our sides
# against the lean peer. 32-byte echo, closed loop, loopback only.
#
# Rounds are interleaved (every pair of every cell once per round, in a rotating order) and
# the table shows medians over the rounds, and the paired ratios: the median over the rounds of
# each round's own ratio to lean -> lean (steadier when the machine's speed drifts). CPU per
# call is utime+stime of the server process (from /proc/PID/stat) and of the client process
# (this shell's reaped-children time, also from /proc/PID/stat), each divided by the client's
# successful calls. Clients and servers share the machine's cores, so compare ratios within one
# run, never figures across runs.
#
# Usage: scripts/perf-matrix.sh [--rounds N] [--duration SECS] [--cells "1x1 1x64 4x256"]
#                               [--size BYTES] [--no-go] [--no-build] [--pack] [--hold] [--syscalls]
#                               [--addr HOST:PORT [--server-pid PID]]
#   --addr       measure another running echo server (loopback only) instead of ours: the
#                table then shows every client against it beside the lean pair.
#   --server-pid that server's process id, for its CPU per call.
#   --no-build   use the binaries already built (to measure while the tree does not compile).
#   --pack       also time packing and unpacking the pack benchmark's 128-byte Order: ours
#                (cargo bench --bench pack, derive and hand-written) against go-iproto's
#                reflection codec (go-pack-bench).
#   --hold       also measure what the performance work must keep: typed calls against raw ones
#                (benches/rpc.rs --interleaved, target at most 5% more per call) and memory per
#                idle channel (examples/idle_memory.rs, target at most 8 KiB).
#   --syscalls   after the rounds, one more run of every pair under `perf stat` (needs perf and
#                the right to trace: root, or kernel.perf_event_paranoid <= 1): system calls,
#                context switches and task-clock per call of each side. Tracing makes system
#                calls dearer, so that run's calls/s are not comparable with the table's; its
#                counts per call are what it is for.
# Env: IPROTO_SHARED (default: <repo>/../shared), CARGO_TARGET_DIR (default: <repo>/target).
set -euo pipefail

ROUNDS=3
DURATION=2
CELLS="1x1 1x64 4x256"
SIZE=32
WITH_GO=1
ADDR=""
ADDR_PID=""
BUILD=1
PACK=0
HOLD=0
SYSCALLS=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "perf-matrix: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
        --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
        --cells) CELLS=${2:?--cells needs a value}; shift 2 ;;
        --size) SIZE=${2:?--size needs a value}; shift 2 ;;
        --no-go) WITH_GO=0; shift ;;
        --no-build) BUILD=0; shift ;;
        --pack) PACK=1; shift ;;
        --hold) HOLD=1; shift ;;
        --syscalls) SYSCALLS=1; shift ;;
        --addr) ADDR=${2:?--addr needs a value}; shift 2 ;;
        --server-pid) ADDR_PID=${2:?--server-pid needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ $DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration must be seconds, e.g. 2 or 1.5"
[[ $SIZE =~ ^[0-9]+$ ]] || die "--size must be a byte count"
for cell in $CELLS; do [[ $cell =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || die "bad cell $cell (want CONNSxCALLERS)"; done
if [ -n "$ADDR" ]; then
    case "$ADDR" in
        127.*:* | localhost:* | "[::1]":*) ;;
        *) die "--addr must be a loopback address (127.x.x.x:PORT, localhost:PORT or [::1]:PORT)" ;;
    esac
    [ -z "$ADDR_PID" ] || [ -r "/proc/$ADDR_PID/stat" ] || die "no process $ADDR_PID"
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SHARED=${IPROTO_SHARED:-$ROOT/../shared}
[ -d "$SHARED/ceiling" ] || die "the shared references are not at $SHARED (set IPROTO_SHARED)"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/perf-matrix.XXXXXX")

# Every process this script starts is in PIDS and is killed on any exit.
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------------------------
IPROTO="$TARGET/release/iproto"
if [ "$BUILD" = 1 ]; then
    echo "building: iproto (release), the lean yardstick, go-iproto's peers" >&2
    cargo build --release -q -p mr-iproto-cli --manifest-path "$ROOT/Cargo.toml"
fi
[ -x "$IPROTO" ] || die "no $IPROTO (run without --no-build)"

# The shared copy is read-only: build the yardstick from a copy of its own (outside our workspace).
LEAN="$TARGET/ceiling"
if [ ! -f "$LEAN/Cargo.toml" ] || ! diff -rq "$SHARED/ceiling/src" "$LEAN/src" >/dev/null 2>&1; then
    rm -rf "$LEAN"
    mkdir -p "$LEAN"
    cp -R "$SHARED/ceiling/." "$LEAN/"
    chmod -R u+w "$LEAN"
    printf '\n[workspace]\n' >>"$LEAN/Cargo.toml"
    cp "$ROOT/Cargo.lock" "$LEAN/Cargo.lock" # the same crate versions as ours, no new downloads
fi
[ "$BUILD" = 0 ] && [ -x "$LEAN/target/release/raw-bench" ] ||
    CARGO_TARGET_DIR="$LEAN/target" cargo build --release -q --manifest-path "$LEAN/Cargo.toml"
RAW_SERVER="$LEAN/target/release/raw-server"
RAW_BENCH="$LEAN/target/release/raw-bench"

GO_BIN="$TARGET/go-peers/bin"
if [ "$WITH_GO" = 1 ]; then
    if [ -x "$GO_BIN/go-bench" ] && [ -x "$GO_BIN/go-echo-server" ]; then
        :
    elif command -v go >/dev/null; then
        PEERS_WORK="$TARGET/go-peers" "$SHARED/peers/go/build.sh" "$GO_BIN" 2>"$WORK/go-build.log" ||
            { cat "$WORK/go-build.log" >&2; die "building go-iproto's peers failed"; }
    else
        echo "perf-matrix: no 'go' (apt: golang-go golang-golang-x-time-dev): go-iproto left out" >&2
        WITH_GO=0
    fi
fi

# --- servers ---------------------------------------------------------------------------------
declare -A SPID SADDR
# start_server KEY STREAM CMD...: runs CMD, waits (bounded) for `listening on ADDR` on STREAM.
start_server() {
    local key=$1 stream=$2 log="$WORK/$1.listen" pid addr="" i
    shift 2
    if [ "$stream" = stdout ]; then
        "$@" >"$log" 2>"$WORK/$key.log" &
    else
        "$@" 2>"$log" >/dev/null &
    fi
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 200); do
        addr=$(sed -n 's/^listening on //p' "$log" | head -n1)
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || die "server $key exited: $(cat "$log" "$WORK/$key.log" 2>/dev/null)"
        sleep 0.05
    done
    [ -n "$addr" ] || die "server $key did not print 'listening on ADDR' within 10 s"
    SPID[$key]=$pid
    SADDR[$key]=$addr
}

start_server lean stderr "$RAW_SERVER" --addr 127.0.0.1:0
if [ -n "$ADDR" ]; then
    SADDR[addr]=$ADDR
    SPID[addr]=$ADDR_PID
    PAIRS="ours:addr lean:addr lean:lean"
    [ "$WITH_GO" = 1 ] && PAIRS="$PAIRS go:addr"
else
    start_server ours stdout "$IPROTO" serve 127.0.0.1:0 --echo
    PAIRS="ours:ours lean:lean lean:ours ours:lean"
    if [ "$WITH_GO" = 1 ]; then
        start_server go stdout "$GO_BIN/go-echo-server" -addr 127.0.0.1:0
        PAIRS="$PAIRS go:go"
    fi
fi

# --- one measurement -------------------------------------------------------------------------
# CPU time in clock ticks, read without forking (a fork would count as a reaped child):
# proc_cpu PID -> utime+stime of PID; children_cpu -> cutime+cstime of this shell.
CPU=0
proc_cpu() {
    local line
    read -r line <"/proc/$1/stat" || { CPU=0; return; }
    line=${line##*) }
    # shellcheck disable=SC2086
    set -- $line
    CPU=$((${12} + ${13}))
}
children_cpu() {
    local line
    read -r line <"/proc/$$/stat"
    line=${line##*) }
    # shellcheck disable=SC2086
    set -- $line
    CPU=$((${14} + ${15}))
}

# json FILE KEY: the number KEY in the one-line JSON report FILE.
json() { sed -n "s/.*\"$2\":\([0-9.eE+-]*\).*/\1/p" "$1" | head -n1; }

TICK=$(getconf CLK_TCK)
RESULTS="$WORK/results"
: >"$RESULTS"

# client_cmd CLIENT ADDR CONNS CALLERS: the client's command line, in CMD.
CMD=()
client_cmd() {
    case "$1" in
        ours) CMD=("$IPROTO" bench "$2" --conns "$3" --concurrency "$4" --size "$SIZE" --duration "$DURATION" --json) ;;
        lean) CMD=("$RAW_BENCH" --addr "$2" --conns "$3" --concurrency "$4" --size "$SIZE" --duration "$DURATION") ;;
        go) CMD=("$GO_BIN/go-bench" -addr "$2" -conns "$3" -concurrency "$4" -size "$SIZE" -duration "$DURATION") ;;
    esac
}

# measure CELL CLIENT SERVER ROUND: one bench run, appended to $RESULTS.
measure() {
    local cell=$1 client=$2 server=$3 round=$4
    local conns=${cell%x*} callers=${cell#*x} addr=${SADDR[$server]} spid=${SPID[$server]}
    local out="$WORK/run.json" err="$WORK/run.err" rc=0
    client_cmd "$client" "$addr" "$conns" "$callers"
    local c0 c1 s0=0 s1=0
    [ -n "$spid" ] && { proc_cpu "$spid"; s0=$CPU; }
    children_cpu; c0=$CPU
    "${CMD[@]}" >"$out" 2>"$err" &
    local cpid=$!
    PIDS+=("$cpid")
    wait "$cpid" || rc=$?
    children_cpu; c1=$CPU
    [ -n "$spid" ] && { proc_cpu "$spid"; s1=$CPU; }
    unset 'PIDS[-1]'
    if [ -n "$spid" ] && ! kill -0 "$spid" 2>/dev/null; then die "server $server died; its log: $(cat "$WORK/$server.log" 2>/dev/null)"; fi
    local calls cps p50 p99 errors
    calls=$(json "$out" calls)
    cps=$(json "$out" calls_per_sec)
    p50=$(json "$out" p50_us)
    p99=$(json "$out" p99_us)
    errors=$(json "$out" errors)
    if [ -z "$calls" ] || [ -z "$cps" ]; then
        die "$client -> $server ($cell) printed no report (exit $rc): $(head -c 2000 "$err")"
    fi
    [ "$rc" = 0 ] || [ "${errors:-0}" != 0 ] || echo "perf-matrix: $client -> $server ($cell) exited $rc" >&2
    local sus="-"
    [ -n "$spid" ] && sus=$(awk -v t=$((s1 - s0)) -v hz="$TICK" -v n="$calls" 'BEGIN { printf "%.2f", n ? t / hz * 1e6 / n : 0 }')
    local cus
    cus=$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v n="$calls" 'BEGIN { printf "%.2f", n ? t / hz * 1e6 / n : 0 }')
    echo "$cell $client $server $round $cps $p50 $p99 ${errors:-0} $cus $sus" >>"$RESULTS"
    printf '  round %s  %-6s %-5s -> %-5s %12.0f calls/s  p99 %8s us  errors %s\n' \
        "$round" "$cell" "$client" "$server" "$cps" "$p99" "${errors:-0}" >&2
}

# --- the rounds ------------------------------------------------------------------------------
read -r -a pair_list <<<"$PAIRS"
echo "measuring: $ROUNDS rounds x cells [$CELLS] x pairs [$PAIRS], ${DURATION}s each" >&2
for round in $(seq "$ROUNDS"); do
    for cell in $CELLS; do
        n=${#pair_list[@]}
        for i in $(seq 0 $((n - 1))); do
            pair=${pair_list[$(((i + round - 1) % n))]}
            measure "$cell" "${pair%%:*}" "${pair#*:}" "$round"
        done
    done
done

# --- system calls per call (--syscalls) --------------------------------------------------------
SYS_EVENTS=raw_syscalls:sys_enter,context-switches,task-clock
SYSRESULTS="$WORK/syscalls"
: >"$SYSRESULTS"
# stat_field FILE EVENT: the count of EVENT in a `perf stat -x,` output FILE.
stat_field() { awk -F, -v e="$2" '$3 == e || index($3, e ":") == 1 { print $1; exit }' "$1"; }
# syscount CELL CLIENT SERVER: one run of the pair under perf stat, appended to $SYSRESULTS.
syscount() {
    local cell=$1 client=$2 server=$3
    local conns=${cell%x*} callers=${cell#*x} addr=${SADDR[$server]} spid=${SPID[$server]} ppid="" calls
    client_cmd "$client" "$addr" "$conns" "$callers"
    rm -f "$WORK/srv.stat" "$WORK/cli.stat"
    if [ -n "$spid" ]; then
        perf stat -x, -e "$SYS_EVENTS" -p "$spid" -o "$WORK/srv.stat" 2>/dev/null &
        ppid=$!
        PIDS+=("$ppid")
        sleep 0.2 # perf attaches to the server's threads before the load starts
    fi
    perf stat -x, -e "$SYS_EVENTS" -o "$WORK/cli.stat" -- "${CMD[@]}" >"$WORK/sys.json" 2>"$WORK/sys.err" ||
        die "$client -> $server ($cell) under perf stat failed: $(head -c 2000 "$WORK/sys.err")"
    if [ -n "$ppid" ]; then
        kill -INT "$ppid" 2>/dev/null || true
        wait "$ppid" 2>/dev/null || true
        unset 'PIDS[-1]'
    fi
    calls=$(json "$WORK/sys.json" calls)
    [ -n "$calls" ] && [ "$calls" != 0 ] || die "$client -> $server ($cell) under perf stat made no calls"
    local f fields=""
    for f in "$WORK/cli.stat" "$WORK/srv.stat"; do
        if [ -f "$f" ]; then
            fields="$fields $(stat_field "$f" raw_syscalls:sys_enter) $(stat_field "$f" context-switches) $(stat_field "$f" task-clock)"
        else
            fields="$fields - - -"
        fi
    done
    echo "$cell $client $server $calls $(json "$WORK/sys.json" calls_per_sec)$fields" >>"$SYSRESULTS"
    echo "  perf stat  $cell  $client -> $server  $calls calls" >&2
}
if [ "$SYSCALLS" = 1 ]; then
    command -v perf >/dev/null || die "--syscalls needs perf (apt: linux-perf)"
    perf stat -e raw_syscalls:sys_enter -o /dev/null -- true 2>/dev/null ||
        die "--syscalls: perf cannot count system calls here (root, or sysctl kernel.perf_event_paranoid=1)"
    for cell in $CELLS; do
        for pair in "${pair_list[@]}"; do
            syscount "$cell" "${pair%%:*}" "${pair#*:}"
        done
    done
fi

# --- the table -------------------------------------------------------------------------------
echo
echo "perf-matrix: $(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), ${SIZE}-byte echo," \
    "medians of $ROUNDS interleaved ${DURATION}s rounds"
echo "pairs are client -> server; ours = iproto bench / iproto serve --echo; lean = shared/ceiling raw-bench / raw-server;"
echo "go = go-iproto's go-bench / go-echo-server${ADDR:+; addr = $ADDR}. CPU is us per call. Compare ratios within this run only."
echo
# Calls/s as 1.23M, 456k or 7.8k, for both tables below.
AWK_RATE='function k(s) { return s >= 1e6 ? sprintf("%.2fM", s / 1e6) : s >= 1e4 ? sprintf("%.0fk", s / 1e3) : sprintf("%.1fk", s / 1e3) }'
awk -v cells="$CELLS" -v pairs="$PAIRS" -v mode="${ADDR:+addr}" "$AWK_RATE"'
function median(key,    n, i, j, t, v) {
    n = split(vals[key], v, " ")
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > t + 0; j--) v[j + 1] = v[j]; v[j + 1] = t }
    if (n == 0 || v[1] == "-") return "-"
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function add(key, x) { vals[key] = (key in vals) ? vals[key] " " x : x }
function ratio(a, b) { return (a == "-" || b == "-" || b == 0) ? "-" : sprintf("%.2f", a / b) }
function get(c, p, f) { return ((c SUBSEP p SUBSEP f) in vals) ? median(c SUBSEP p SUBSEP f) : "-" }
function us(c, p, f,    v) { v = get(c, p, f); return v == "-" ? v : sprintf("%.0f", v) }
function cpu(c, p, f,    v) { v = get(c, p, f); return v == "-" ? v : sprintf("%.2f", v) }
function rate(c, p,    v) { v = get(c, p, "cps"); return v == "-" ? "-" : k(v) }
function spread(c, p,    n, i, v, lo, hi, m) {
    n = split(vals[c SUBSEP p SUBSEP "cps"], v, " "); lo = hi = v[1]
    for (i = 2; i <= n; i++) { if (v[i] + 0 < lo + 0) lo = v[i]; if (v[i] + 0 > hi + 0) hi = v[i] }
    m = median(c SUBSEP p SUBSEP "cps"); return m > 0 ? sprintf("%.0f%%", (hi - lo) / m * 100) : "-"
}
{
    p = $2 ":" $3
    add($1 SUBSEP p SUBSEP "cps", $5); add($1 SUBSEP p SUBSEP "p50", $6); add($1 SUBSEP p SUBSEP "p99", $7)
    add($1 SUBSEP p SUBSEP "err", $8); add($1 SUBSEP p SUBSEP "ccpu", $9); add($1 SUBSEP p SUBSEP "scpu", $10)
    errs[$1 SUBSEP p] += $8
    round_cps[$1 SUBSEP p SUBSEP $4] = $5; rounds[$4] = 1
}
# The median over the rounds of (pair p / lean -> lean) measured in the same round: the rounds
# of one cell run back to back, so this ratio drifts less with the machine than a ratio of
# medians does.
function paired(c, p,    r, key, mine, lean, x) {
    key = c SUBSEP p SUBSEP "paired"; delete vals[key]
    for (r in rounds) {
        mine = c SUBSEP p SUBSEP r; lean = c SUBSEP "lean:lean" SUBSEP r
        if (mine in round_cps && lean in round_cps && round_cps[lean] > 0)
            add(key, round_cps[mine] / round_cps[lean])
    }
    if (!(key in vals)) return "-"
    x = median(key); return sprintf("%.2f", x)
}
END {
    nc = split(cells, C, " "); np = split(pairs, P, " ")
    if (mode == "addr") {
        print "| conns x callers | ours -> addr | lean -> addr | go -> addr | lean -> lean | ours->addr / lean | addr / lean (lean client) | p99 ours->addr / lean->addr / lean |"
        print "|---|---|---|---|---|---|---|---|"
        for (i = 1; i <= nc; i++) {
            c = C[i]
            printf "| %s | %s | %s | %s | %s | %s | %s | %s / %s / %s us |\n", c, rate(c, "ours:addr"), rate(c, "lean:addr"),
                rate(c, "go:addr"), rate(c, "lean:lean"), ratio(get(c, "ours:addr", "cps"), get(c, "lean:lean", "cps")),
                ratio(get(c, "lean:addr", "cps"), get(c, "lean:lean", "cps")),
                us(c, "ours:addr", "p99"), us(c, "lean:addr", "p99"), us(c, "lean:lean", "p99")
        }
    } else {
        print "| conns x callers | ours | lean | go-iproto | ours / lean | go / lean | p99 ours / lean / go | p99 ours / lean |"
        print "|---|---|---|---|---|---|---|---|"
        for (i = 1; i <= nc; i++) {
            c = C[i]
            printf "| %s | %s | %s | %s | %s | %s | %s / %s / %s us | %s |\n", c, rate(c, "ours:ours"), rate(c, "lean:lean"),
                rate(c, "go:go"), ratio(get(c, "ours:ours", "cps"), get(c, "lean:lean", "cps")),
                ratio(get(c, "go:go", "cps"), get(c, "lean:lean", "cps")),
                us(c, "ours:ours", "p99"), us(c, "lean:lean", "p99"), us(c, "go:go", "p99"),
                ratio(get(c, "ours:ours", "p99"), get(c, "lean:lean", "p99"))
        }
        print ""
        print "Each side on its own, against the lean peer:"
        print ""
        print "| conns x callers | lean -> ours (our server) | ours -> lean (our client) | lean -> lean | our server / lean | our client / lean | p99 lean->ours / ours->lean |"
        print "|---|---|---|---|---|---|---|"
        for (i = 1; i <= nc; i++) {
            c = C[i]; ll = get(c, "lean:lean", "cps")
            printf "| %s | %s | %s | %s | %s | %s | %s / %s us |\n", c, rate(c, "lean:ours"), rate(c, "ours:lean"), rate(c, "lean:lean"),
                ratio(get(c, "lean:ours", "cps"), ll), ratio(get(c, "ours:lean", "cps"), ll),
                us(c, "lean:ours", "p99"), us(c, "ours:lean", "p99")
        }
        print ""
        print "Paired ratios to lean -> lean (median over the rounds of each round'"'"'s own ratio):"
        print ""
        print "| conns x callers | ours -> ours | lean -> ours (our server) | ours -> lean (our client) | go -> go |"
        print "|---|---|---|---|---|"
        for (i = 1; i <= nc; i++) {
            c = C[i]
            printf "| %s | %s | %s | %s | %s |\n", c, paired(c, "ours:ours"), paired(c, "lean:ours"), paired(c, "ours:lean"), paired(c, "go:go")
        }
    }
    print ""
    print "Every pair (medians; spread = (max - min) / median of calls/s over the rounds):"
    print ""
    print "| conns x callers | client -> server | calls/s | spread | p50 us | p99 us | errors (sum) | client CPU us/call | server CPU us/call |"
    print "|---|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= nc; i++) for (j = 1; j <= np; j++) {
        c = C[i]; p = P[j]; if (!((c SUBSEP p SUBSEP "cps") in vals)) continue
        split(p, s, ":")
        printf "| %s | %s -> %s | %s | %s | %s | %s | %d | %s | %s |\n", c, s[1], s[2], rate(c, p), spread(c, p),
            us(c, p, "p50"), us(c, p, "p99"), errs[c SUBSEP p], cpu(c, p, "ccpu"), cpu(c, p, "scpu")
    }
}' "$RESULTS"

if [ "$SYSCALLS" = 1 ]; then
    echo
    echo "System calls and context switches per call, and task-clock in us per call, of each side: one run"
    echo "of every pair under perf stat (tracing slows system calls: its calls/s do not compare with the"
    echo "table's; server figures count every thread of the server process):"
    echo
    echo "| conns x callers | client -> server | calls/s (traced) | client syscalls | client switches | client task-clock | server syscalls | server switches | server task-clock |"
    echo "|---|---|---|---|---|---|---|---|---|"
    awk "$AWK_RATE"'
    function per(x, n, scale) { return x == "-" ? "-" : sprintf(scale == 1 ? "%.3f" : "%.2f", x * scale / n) }
    { printf "| %s | %s -> %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, k($5),
        per($6, $4, 1), per($7, $4, 1), per($8, $4, 1000), per($9, $4, 1), per($10, $4, 1), per($11, $4, 1000) }' "$SYSRESULTS"
fi

# --- packing the Order ------------------------------------------------------------------------
if [ "$PACK" = 1 ]; then
    echo >&2
    echo "timing the Order: cargo bench --bench pack, go-pack-bench" >&2
    cargo bench -q -p mr-iproto --manifest-path "$ROOT/Cargo.toml" --bench pack -- \
        --warm-up-time 1 --measurement-time 2 'order/' >"$WORK/pack.txt" 2>"$WORK/pack.err" ||
        { cat "$WORK/pack.err" >&2; die "cargo bench --bench pack failed"; }
    go_pack="-"
    if [ "$WITH_GO" = 1 ] && { [ -x "$GO_BIN/go-pack-bench" ] || command -v go >/dev/null; }; then
        [ -x "$GO_BIN/go-pack-bench" ] || PEERS_WORK="$TARGET/go-peers" "$SHARED/peers/go/build.sh" "$GO_BIN" 2>/dev/null
        "$GO_BIN/go-pack-bench" >"$WORK/go-pack.json"
        go_pack="$WORK/go-pack.json"
    fi
    echo
    echo "The pack benchmark's 128-byte Order (ns per call; ours: best of 300 interleaved rounds, into a reused"
    echo "buffer; go-iproto: testing.Benchmark of Pack / Unpack, which allocate):"
    echo
    echo "| Order | ours, derive | ours, hand-written | go-iproto | go-iproto / ours (derive) | go-iproto allocations |"
    echo "|---|---|---|---|---|---|"
    for op in pack unpack; do
        line=$(grep -E "^order/$op " "$WORK/pack.txt" || true)
        [ -n "$line" ] || die "no order/$op line in cargo bench's output"
        derive=$(echo "$line" | sed -n 's/.*derive *\([0-9.]*\) ns.*/\1/p')
        hand=$(echo "$line" | sed -n 's/.*hand *\([0-9.]*\) ns.*/\1/p')
        go_ns="-" go_allocs="-"
        if [ "$go_pack" != "-" ]; then
            go_ns=$(json "$go_pack" "${op}_ns")
            go_allocs=$(json "$go_pack" "${op}_allocs")
        fi
        awk -v op="$op" -v d="$derive" -v h="$hand" -v g="$go_ns" -v a="$go_allocs" 'BEGIN {
            printf "| %s | %s ns | %s ns | %s ns | %s | %s |\n", op, d, h, g, (g == "-" || d == 0) ? "-" : sprintf("%.1fx", g / d), a }'
    done
fi

# --- what must hold ---------------------------------------------------------------------------
if [ "$HOLD" = 1 ]; then
    echo >&2
    echo "measuring what must hold: cargo bench --bench rpc -- --interleaved, --example idle_memory" >&2
    cargo bench -q -p mr-iproto --manifest-path "$ROOT/Cargo.toml" --bench rpc -- --interleaved \
        >"$WORK/rpc.txt" 2>"$WORK/rpc.err" || { cat "$WORK/rpc.err" >&2; die "cargo bench --bench rpc failed"; }
    cargo run -q --release -p mr-iproto --manifest-path "$ROOT/Cargo.toml" --example idle_memory \
        >"$WORK/idle.json" 2>"$WORK/idle.err" || { cat "$WORK/idle.err" >&2; die "the idle_memory example failed"; }
    rpc=$(grep -E '^interleaved' "$WORK/rpc.txt" | tail -n1)
    [ -n "$rpc" ] || die "no interleaved line in the rpc bench's output"
    wall=$(echo "$rpc" | sed -n 's/.*median typed\/raw \([0-9.]*\); cpu.*/\1/p')
    cpu=$(echo "$rpc" | sed -n 's/.*cpu.*median typed\/raw \([0-9.]*\)$/\1/p')
    kib=$(json "$WORK/idle.json" kib_per_channel)
    echo
    echo "What must hold (typed/raw: median of 61 interleaved rounds, 64 callers on one connection):"
    echo
    echo "| measure | value | target |"
    echo "|---|---|---|"
    echo "| typed calls / raw calls, wall time | $wall | at most 1.05 |"
    echo "| typed calls / raw calls, CPU time | $cpu | |"
    echo "| memory per idle channel | $kib KiB | at most 8 KiB |"
fi
