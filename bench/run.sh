#!/usr/bin/env bash
# bench/run.sh measures gatehouse against HAProxy and against the bare demo
# app, on loopback, in one run: it installs wrk, HAProxy and curl if missing, builds
# gatehouse, starts the demo app, HAProxy and gatehouse, and runs wrk against
# the three in interleaved rounds. It prints a markdown table of the medians
# and writes it, with every round's raw numbers, to bench/results/latest.md.
# docs/performance.md explains the method. `make bench` runs it.
#
# Environment knobs (defaults in brackets):
#   DURATION   seconds per measured run [10]
#   ROUNDS     interleaved rounds [5]
#   WARMUP     seconds of warm-up per contender before round 1 [3]
#   DEMO_PORT, HAPROXY_PORT, GATEHOUSE_PORT, ADMIN_PORT
#              loopback ports [18081, 18082, 18080, 19090]
#
# It stops exactly the processes it started, by PID, and connects to
# 127.0.0.1 only. It exits 1 if any run saw a socket error or an error status
# (after writing the table, where the errors column shows them).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BENCH=$ROOT/bench
RESULTS=$BENCH/results

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-3}
DEMO_PORT=${DEMO_PORT:-18081}
HAPROXY_PORT=${HAPROXY_PORT:-18082}
GATEHOUSE_PORT=${GATEHOUSE_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19090}
HOST=127.0.0.1
CONTENDERS=(direct haproxy gatehouse)
CONNS=(1 64)

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: FAIL: %s\n' "$*" >&2; exit 1; }

for v in DURATION ROUNDS WARMUP DEMO_PORT HAPROXY_PORT GATEHOUSE_PORT ADMIN_PORT; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

# --- 1. tools ---------------------------------------------------------------

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
	[[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root or: apt-get install -y ${missing[*]}"
	log "installing ${missing[*]} from Debian"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
command -v go >/dev/null || die "go is not on PATH"

# port_free PORT fails if anything accepts connections on 127.0.0.1:PORT
# (a listener on 0.0.0.0 or [::] included).
port_free() {
	if timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; then
		die "port $HOST:$1 is already in use; free it or choose another (DEMO_PORT, HAPROXY_PORT, GATEHOUSE_PORT, ADMIN_PORT)"
	fi
}

ports=("$DEMO_PORT" "$HAPROXY_PORT" "$GATEHOUSE_PORT" "$ADMIN_PORT")
if [[ $(printf '%s\n' "${ports[@]}" | sort -u | wc -l) != "${#ports[@]}" ]]; then
	die "the four ports must differ: ${ports[*]}"
fi
for p in "${ports[@]}"; do port_free "$p"; done

WORK=$(mktemp -d -t gatehouse-bench.XXXXXX)
GATEHOUSE=$WORK/gatehouse
AUDIT=$WORK/audit.log

# --- process bookkeeping ----------------------------------------------------

PIDS=()            # every process this script started, in start order
declare -A NAME    # PID -> name, for messages
declare -A LOGF    # PID -> its output file
LAST_PID=

# start NAME LOGFILE CMD... runs CMD in the background and records its PID
# in LAST_PID (not printed: a $(...) subshell would own the child).
start() {
	local name=$1 logf=$2
	shift 2
	"$@" >"$logf" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
	NAME[$LAST_PID]=$name
	LOGF[$LAST_PID]=$logf
}

cleanup() {
	local rc=$? pid i
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "${NAME[$pid]} (pid $pid) ignored SIGTERM for 5s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	rm -f "$AUDIT"
	if ((rc == 0)); then
		rm -rf "$WORK"
	else
		log "process logs kept in $WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building gatehouse into $GATEHOUSE"
go build -o "$GATEHOUSE" ./cmd/gatehouse

# show_log PID prints the tail of a process' output, for failure messages.
show_log() {
	log "last lines of ${NAME[$1]}'s output (${LOGF[$1]}):"
	tail -n 20 "${LOGF[$1]}" >&2 || true
}

# alive PID fails the run if the process has exited.
alive() {
	kill -0 "$1" 2>/dev/null && return 0
	show_log "$1"
	die "${NAME[$1]} (pid $1) exited unexpectedly"
}

# wait_ready PID URL polls URL until it answers 2xx, failing if the process
# exits or 30 s pass.
wait_ready() {
	local pid=$1 url=$2 deadline=$((SECONDS + 30))
	until curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
		alive "$pid"
		if ((SECONDS >= deadline)); then
			show_log "$pid"
			die "${NAME[$pid]} not ready at $url after 30s"
		fi
		sleep 0.05
	done
}

# render TEMPLATE OUT replaces the @NAME@ fields of a config template.
render() {
	sed -e "s|@DEMO_PORT@|$DEMO_PORT|g" -e "s|@HAPROXY_PORT@|$HAPROXY_PORT|g" \
		-e "s|@GATEHOUSE_PORT@|$GATEHOUSE_PORT|g" -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" \
		-e "s|@AUDIT_FILE@|$AUDIT|g" "$1" >"$2"
	if grep -q '@[A-Z_]*@' "$2"; then die "unreplaced field in $2"; fi
}

# --- 2. contenders ----------------------------------------------------------

render "$BENCH/haproxy.cfg" "$WORK/haproxy.cfg"
render "$BENCH/gatehouse.yaml" "$WORK/gatehouse.yaml"
haproxy -c -q -f "$WORK/haproxy.cfg" || die "HAProxy rejects $WORK/haproxy.cfg"
"$GATEHOUSE" check -config "$WORK/gatehouse.yaml" >&2 || die "gatehouse rejects $WORK/gatehouse.yaml"

start demo "$WORK/demo.log" "$GATEHOUSE" demo -addr "$HOST:$DEMO_PORT"
DEMO_PID=$LAST_PID
wait_ready "$DEMO_PID" "http://$HOST:$DEMO_PORT/hello"

# -db keeps HAProxy in the foreground as one process (its threads inside), so
# $! is the process whose CPU time is read.
start haproxy "$WORK/haproxy.log" haproxy -db -f "$WORK/haproxy.cfg"
HAPROXY_PID=$LAST_PID
wait_ready "$HAPROXY_PID" "http://$HOST:$HAPROXY_PORT/hello"

start gatehouse "$WORK/gatehouse.log" "$GATEHOUSE" serve -config "$WORK/gatehouse.yaml"
GATEHOUSE_PID=$LAST_PID
wait_ready "$GATEHOUSE_PID" "http://$HOST:$ADMIN_PORT/.gatehouse/readyz"
wait_ready "$GATEHOUSE_PID" "http://$HOST:$GATEHOUSE_PORT/hello"

declare -A URL=(
	[direct]="http://$HOST:$DEMO_PORT/hello"
	[haproxy]="http://$HOST:$HAPROXY_PORT/hello"
	[gatehouse]="http://$HOST:$GATEHOUSE_PORT/hello"
)
declare -A PROXY_PID=([haproxy]=$HAPROXY_PID [gatehouse]=$GATEHOUSE_PID)

# Every contender must answer 200 with the demo app's exact 13-byte body.
printf 'hello, world\n' >"$WORK/expected"
for c in "${CONTENDERS[@]}"; do
	code=$(curl -sS -o "$WORK/got" -w '%{http_code}' --max-time 5 "${URL[$c]}") ||
		die "$c: GET ${URL[$c]} failed"
	[[ $code == 200 ]] || die "$c: GET ${URL[$c]} answered $code, want 200"
	cmp -s "$WORK/expected" "$WORK/got" || die "$c: GET ${URL[$c]} body differs from 'hello, world\\n'"
done
# The audit writer flushes every 200 ms; give it a few seconds.
deadline=$((SECONDS + 5))
until [[ -s $AUDIT ]]; do
	((SECONDS < deadline)) || die "gatehouse wrote no audit record to $AUDIT"
	sleep 0.05
done

# --- 3. measurement ---------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID prints utime+stime of the whole process (all threads), in
# clock ticks, from /proc/PID/stat (fields 14 and 15; the command name in
# field 2 may hold spaces, so the line is cut after its closing parenthesis).
cpu_ticks() {
	local s
	s=$(<"/proc/$1/stat")
	s=${s##*) }
	read -r -a f <<<"$s"
	echo $((f[11] + f[12]))
}

# other_ticks prints the CPU time, in clock ticks, of every process on the
# machine except this script and its children (the demo app, HAProxy,
# gatehouse, wrk): utime+stime+cutime+cstime of each, so a process that ends
# during a run is still counted through its parent's cutime and cstime.
# Kernel threads count too (ksoftirqd may be doing loopback work for us).
# /proc/stat's tick-sampled totals are not used: on this kind of VM they lose
# ticks under a 1-connection ping-pong and disagree with the per-process times.
other_ticks() {
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v me=$$ '{
		pid = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
		# f[1] is the state, f[2] the parent PID, f[12] to f[15] the times.
		if (pid == me || f[2] == me) next
		t += f[12] + f[13] + f[14] + f[15]
	} END { printf "%d", t }'
}

# other_pct TICKS SECONDS prints TICKS as a percentage of the whole machine's
# CPU time over SECONDS. It is an estimate: a process whose parent does not
# reap it leaves no trace, which can even make TICKS negative (shown as 0).
other_pct() {
	awk -v t="$1" -v s="$2" -v hz="$CLK_TCK" -v n="$(nproc)" 'BEGIN {
		if (t < 0) t = 0
		printf "%.0f", (s > 0 ? 100 * t / (s * hz * n) : 0) }'
}

# busy_check samples the machine for a second before the run and warns when
# other work is using it, since everything here shares the same CPUs.
busy_check() {
	local o0 o1 e0 pct
	e0=$EPOCHREALTIME
	o0=$(other_ticks)
	sleep 1
	o1=$(other_ticks)
	pct=$(other_pct $((o1 - o0)) "$(awk -v a="$e0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')")
	if ((pct > 10)); then
		log "warning: other processes use ${pct}% of the machine before the run; results will be noisy"
	fi
}

declare -A W     # the last wrk run's results, from report.lua
declare -A R     # raw results: R[contender,conns,round,metric]
ERRORS=0         # runs with socket errors or error statuses

# run_wrk URL CONNS SECONDS runs wrk (tracked like the servers, so an
# interrupt stops it too) and fills W.
run_wrk() {
	local url=$1 conns=$2 secs=$3 threads=2 out line kv
	((conns > 1)) || threads=1
	out=$WORK/wrk.out
	start wrk "$out" wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 5s --latency \
		-s "$BENCH/report.lua" "$url"
	local rc=0
	wait "$LAST_PID" || rc=$?
	unset 'PIDS[-1]' # reaped: its PID may be reused, so cleanup must not signal it
	if ((rc != 0)); then
		cat "$out" >&2
		die "wrk failed (exit $rc) against $url"
	fi
	line=$(grep '^WRK ' "$out") || {
		cat "$out" >&2
		die "wrk printed no result line against $url"
	}
	W=()
	for kv in ${line#WRK }; do W[${kv%%=*}]=${kv#*=}; done
}

# audit_settle N waits (up to 5 s) until the audit file holds at least N
# records (the writer flushes every 200 ms) and prints the count.
audit_settle() {
	local want=$1 n deadline=$((SECONDS + 5))
	while :; do
		n=$(wc -l <"$AUDIT")
		if ((n >= want || SECONDS >= deadline)); then
			echo "$n"
			return
		fi
		sleep 0.05
	done
}

# measure CONTENDER CONNS ROUND runs one measured run and stores its numbers.
measure() {
	local c=$1 conns=$2 round=$3 pid="" t0=0 t1=0 d0=0 d1=0 k errs records=0 statuses
	local o0 o1
	pid=${PROXY_PID[$c]:-}
	alive "$DEMO_PID"
	[[ -z $pid ]] || alive "$pid"
	[[ $c != gatehouse ]] || : >"$AUDIT" # O_APPEND: gatehouse keeps writing at the new end
	o0=$(other_ticks)
	[[ -z $pid ]] || t0=$(cpu_ticks "$pid")
	d0=$(cpu_ticks "$DEMO_PID")
	run_wrk "${URL[$c]}" "$conns" "$DURATION"
	[[ -z $pid ]] || t1=$(cpu_ticks "$pid")
	d1=$(cpu_ticks "$DEMO_PID")
	o1=$(other_ticks)
	alive "$DEMO_PID"
	[[ -z $pid ]] || alive "$pid"

	k="$c,$conns,$round"
	R[$k,requests]=${W[requests]}
	R[$k,rps]=$(awk -v n="${W[requests]}" -v us="${W[duration_us]}" 'BEGIN { printf "%.0f", n / (us / 1e6) }')
	R[$k,p50]=${W[p50_us]}
	R[$k,p90]=${W[p90_us]}
	R[$k,p99]=${W[p99_us]}
	R[$k,max]=${W[max_us]}
	if [[ -n $pid ]]; then
		R[$k,cpu]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="${W[requests]}" \
			'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')
	else
		R[$k,cpu]=-
	fi
	# Other CPU: what other processes and kernel threads used
	# during the run, as a share of the whole machine (interference).
	R[$k,other]=$(other_pct $((o1 - o0)) "$(awk -v us="${W[duration_us]}" 'BEGIN { print us / 1e6 }')")
	R[$k,appcpu]=$(awk -v t=$((d1 - d0)) -v hz="$CLK_TCK" -v n="${W[requests]}" \
		'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')
	errs=""
	for e in connect read write timeout status; do
		((W[$e] == 0)) || errs+="${errs:+ }$e=${W[$e]}"
	done
	((W[requests] > 0)) || errs+="${errs:+ }no-requests"
	if [[ $c == gatehouse ]]; then
		records=$(audit_settle "${W[requests]}")
		# Statuses other than 200, as "499×3": wrk abandons its in-flight
		# requests when it stops, and gatehouse records those as 499.
		statuses=$(grep -v '"status":200,' "$AUDIT" | grep -o '"status":[0-9]*' |
			sort | uniq -c | awk '{ sub(/"status":/, "", $2); printf "%s%s×%s", (NR > 1 ? ", " : ""), $2, $1 }' || true)
		((records >= W[requests])) || errs+="${errs:+ }audit-short=$((W[requests] - records))"
		R[$k,audit]="$records${statuses:+ ($statuses)}"
	else
		R[$k,audit]=-
	fi
	R[$k,errors]=${errs:-0}
	[[ -z $errs ]] || ERRORS=$((ERRORS + 1))
	log "$(printf 'round %d  %-9s c=%-2d  %7s req/s  p50 %5d µs  p99 %6d µs  proxy CPU %6s µs/req  other CPU %3s%%  errors: %s' \
		"$round" "$c" "$conns" "${R[$k,rps]}" "${W[p50_us]}" "${W[p99_us]}" "${R[$k,cpu]}" "${R[$k,other]}" "${R[$k,errors]}")"
}

total=$((${#CONTENDERS[@]} * (WARMUP + ${#CONNS[@]} * ROUNDS * DURATION)))
log "measuring: ${#CONTENDERS[@]} contenders x ${#CONNS[@]} loads x $ROUNDS rounds x ${DURATION}s (about $((total / 60 + 1)) min)"
busy_check
for c in "${CONTENDERS[@]}"; do
	log "warm-up: $c, 64 connections, ${WARMUP}s"
	run_wrk "${URL[$c]}" 64 "$WARMUP"
	werrs=$((W[connect] + W[read] + W[write] + W[timeout] + W[status]))
	((werrs == 0)) || log "warning: $c warm-up saw $werrs errors"
done
for ((round = 1; round <= ROUNDS; round++)); do
	for conns in "${CONNS[@]}"; do
		for c in "${CONTENDERS[@]}"; do
			measure "$c" "$conns" "$round"
		done
	done
done

# --- 4. report --------------------------------------------------------------

# median prints the median of its numeric arguments ("-" if there are none).
median() {
	[[ $1 == - ]] && { echo -; return; }
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "-"; exit }
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		print m }'
}

# med CONTENDER CONNS METRIC prints the median across rounds.
med() {
	local vals=() r
	for ((r = 1; r <= ROUNDS; r++)); do vals+=("${R[$1,$2,$r,$3]}"); done
	median "${vals[@]}"
}

# fmtnum FORMAT SCALE VALUE prints VALUE/SCALE with FORMAT, or — for "-".
fmtnum() {
	if [[ $3 == - ]]; then
		echo —
	else
		awk -v f="$1" -v d="$2" -v x="$3" 'BEGIN { printf f, x / d }'
	fi
}
ms() { fmtnum %.3f 1000 "$1"; }
int() { fmtnum %.0f 1 "$1"; }
one() { fmtnum %.1f 1 "$1"; }

gitrev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || gitrev+=" (with uncommitted changes)"
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)

{
	echo "# gatehouse load test, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Machine: $(nproc) CPUs ($cpu_model), Linux $(uname -r). $(go version | cut -d' ' -f3),"
	echo "$(haproxy -v | head -n 1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), gatehouse at $gitrev."
	echo "GET /hello (13-byte body), $ROUNDS interleaved rounds of ${DURATION}s per cell after a ${WARMUP}s warm-up;"
	echo "each cell is the median across rounds. 1 connection: wrk -t1 -c1; 64 connections: wrk -t2 -c64."
	echo "Proxy CPU is the proxy process' user+system CPU time per request (— for direct)."
	echo
	echo "| contender | connections | req/s | p50 (ms) | p99 (ms) | proxy CPU (µs/req) | errors |"
	echo "|---|---:|---:|---:|---:|---:|---|"
	for conns in "${CONNS[@]}"; do
		for c in "${CONTENDERS[@]}"; do
			errs=""
			for ((r = 1; r <= ROUNDS; r++)); do
				[[ ${R[$c,$conns,$r,errors]} == 0 ]] || errs+="${errs:+; }round $r: ${R[$c,$conns,$r,errors]}"
			done
			echo "| $c | $conns | $(int "$(med "$c" "$conns" rps)") | $(ms "$(med "$c" "$conns" p50)") |" \
				"$(ms "$(med "$c" "$conns" p99)") | $(one "$(med "$c" "$conns" cpu)") | ${errs:-0} |"
		done
	done
	others=()
	for k in "${!R[@]}"; do [[ $k != *,other ]] || others+=("${R[$k]}"); done
	echo
	echo "Other CPU (other processes and kernel threads, as a share of the machine) during"
	printf 'the measured runs: median %s%%, max %s%%.\n' "$(median "${others[@]}")" \
		"$(printf '%s\n' "${others[@]}" | sort -g | tail -n 1)"
	echo
	echo "## Targets"
	echo
	h64=$(med haproxy 64 rps) g64=$(med gatehouse 64 rps)
	h1=$(med haproxy 1 p99) g1=$(med gatehouse 1 p99)
	awk -v h="$h64" -v g="$g64" 'BEGIN {
		r = g / h; printf "- gatehouse req/s at 64 connections is %.0f%% of HAProxy'"'"'s (%.0f vs %.0f; target at least 60%%): %s.\n",
			100 * r, g, h, ((r >= 0.60) ? "met" : "NOT met") }'
	awk -v h="$h1" -v g="$g1" 'BEGIN {
		d = g - h; printf "- gatehouse p99 at 1 connection is %+.3f ms from HAProxy'"'"'s (%.3f vs %.3f ms; target within 0.3 ms): %s.\n",
			d / 1000, g / 1000, h / 1000, ((d <= 300) ? "met" : "NOT met") }'
	if ((ERRORS > 0)); then
		echo "- $ERRORS run(s) had errors (see the errors column): these figures do not measure a working proxy."
	fi
	echo
	echo "## Raw rounds"
	echo
	echo "App CPU is the demo app's CPU time per request."
	echo "Other CPU is what other processes and kernel threads used during the run, as a share of the machine."
	echo "Audit is the number of records gatehouse wrote during the run (at least the requests wrk counted),"
	echo "with the statuses other than 200: wrk abandons its in-flight requests when it stops (499)."
	echo
	echo "| round | contender | connections | requests | req/s | p50 (µs) | p90 (µs) | p99 (µs) | max (µs) | proxy CPU (µs/req) | app CPU (µs/req) | other CPU (%) | audit | errors |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
	for ((r = 1; r <= ROUNDS; r++)); do
		for conns in "${CONNS[@]}"; do
			for c in "${CONTENDERS[@]}"; do
				k="$c,$conns,$r"
				echo "| $r | $c | $conns | ${R[$k,requests]} | ${R[$k,rps]} | ${R[$k,p50]} | ${R[$k,p90]} | ${R[$k,p99]} |" \
					"${R[$k,max]} | $(one "${R[$k,cpu]}") | ${R[$k,appcpu]} | ${R[$k,other]} | ${R[$k,audit]} | ${R[$k,errors]} |"
			done
		done
	done
} >"$WORK/report.md"

mkdir -p "$RESULTS"
cp "$WORK/report.md" "$RESULTS/latest.md"
cp "$WORK/report.md" "$RESULTS/$(date -u '+%Y%m%dT%H%M%SZ').md"
echo
sed -n '/^| contender/,/^## Raw/p' "$WORK/report.md" | sed '$d'
log "results written to bench/results/latest.md"
if ((ERRORS > 0)); then
	die "$ERRORS run(s) saw socket errors, error statuses or missing audit records; see the errors column"
fi
