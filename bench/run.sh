#!/usr/bin/env bash
# bench/run.sh measures gatehouse against HAProxy, oauth2-proxy and the bare
# demo app, on loopback, in one run: it installs wrk, HAProxy, curl and
# openssl if missing, installs oauth2-proxy v7.15.6 with `go install` into
# bin/, builds gatehouse, Dex (make dex), bench/credentials and bench/floor,
# starts the demo app, HAProxy, Dex, a bench token issuer, gatehouse,
# oauth2-proxy and the floor (a bare httputil.ReverseProxy, twice),
# makes the credentials (a sealed gatehouse session, a JWT access token, an
# oauth2-proxy cookie from a real login at Dex), and runs wrk against every
# contender in interleaved rounds. It prints a markdown table of the medians
# and writes it, with every round's raw numbers, to bench/results/latest.md.
# docs/performance.md explains the method. `make bench` runs it.
#
# Environment knobs (defaults in brackets):
#   DURATION   seconds per measured run [10]
#   ROUNDS     interleaved rounds [5]
#   WARMUP     seconds of warm-up per contender before round 1 [3]
#   DEMO_PORT, HAPROXY_PORT, GATEHOUSE_PORT, ADMIN_PORT, DEX_PORT,
#   ISSUER_PORT, OAUTH2_PROXY_PORT, SPOE_PORT, HAPROXY_SPOE_PORT,
#   HAPROXY_INLINE_PORT, GATEHOUSE_PROXY_PORT, FLOOR_PORT, FLOOR_STD_PORT
#              loopback ports [18081, 18082, 18080, 19090, 18083, 18084, 18085,
#              18086, 18087, 18088, 18089, 18090, 18091]
#   CONTENDERS space-separated subset of the contenders to run [all]
#   CONNS      space-separated connection counts [1 64] (the targets need both)
#   OAUTH2_PROXY
#              the oauth2-proxy binary [bin/oauth2-proxy, installed if it is
#              missing or not v7.15.6]
#
# It stops exactly the processes it started, by PID, and connects to
# 127.0.0.1 only. It exits 1 if any run saw a socket error, an error status
# or a status other than the contender's expected one (after writing the
# table, where the errors column shows them).
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
DEX_PORT=${DEX_PORT:-18083}
ISSUER_PORT=${ISSUER_PORT:-18084}
OAUTH2_PROXY_PORT=${OAUTH2_PROXY_PORT:-18085}
SPOE_PORT=${SPOE_PORT:-18086}
HAPROXY_SPOE_PORT=${HAPROXY_SPOE_PORT:-18087}
HAPROXY_INLINE_PORT=${HAPROXY_INLINE_PORT:-18088}
GATEHOUSE_PROXY_PORT=${GATEHOUSE_PROXY_PORT:-18089}
FLOOR_PORT=${FLOOR_PORT:-18090}
FLOOR_STD_PORT=${FLOOR_STD_PORT:-18091}
OAUTH2_PROXY_VERSION=v7.15.6
OAUTH2_PROXY=${OAUTH2_PROXY:-$ROOT/bin/oauth2-proxy}
HOST=127.0.0.1
# AUTH_HOST is the Host header that selects gatehouse's protected route
# (bench/gatehouse.yaml); it is never resolved: wrk connects to 127.0.0.1.
AUTH_HOST=protected.bench.test
# TOKEN_AUDIENCE is the bearer tokens' aud, an API audience that is no OIDC
# client's ID.
TOKEN_AUDIENCE=api://gatehouse-bench
ALL_CONTENDERS=(direct haproxy gatehouse gatehouse-cookie gatehouse-bearer gatehouse-anon
	gatehouse-inline gatehouse-spoe oauth2-proxy-cookie oauth2-proxy-bearer
	gatehouse-least-conn gatehouse-hash floor-h1 floor-std)
if [[ -n ${CONTENDERS:-} ]]; then
	read -r -a CONTENDERS <<<"$CONTENDERS"
	for c in "${CONTENDERS[@]}"; do
		[[ " ${ALL_CONTENDERS[*]} " == *" $c "* ]] || { printf 'bench: FAIL: unknown contender %s\n' "$c" >&2; exit 1; }
	done
else
	CONTENDERS=("${ALL_CONTENDERS[@]}")
fi
read -r -a CONNS <<<"${CONNS:-1 64}"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: FAIL: %s\n' "$*" >&2; exit 1; }

PORT_VARS=(DEMO_PORT HAPROXY_PORT GATEHOUSE_PORT ADMIN_PORT DEX_PORT ISSUER_PORT OAUTH2_PROXY_PORT
	SPOE_PORT HAPROXY_SPOE_PORT HAPROXY_INLINE_PORT GATEHOUSE_PROXY_PORT FLOOR_PORT FLOOR_STD_PORT)
for v in DURATION ROUNDS WARMUP "${PORT_VARS[@]}"; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

# --- 1. tools ---------------------------------------------------------------

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
	[[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root or: apt-get install -y ${missing[*]}"
	log "installing ${missing[*]} from Debian"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
command -v go >/dev/null || die "go is not on PATH"
command -v make >/dev/null || die "make is not on PATH (it builds bin/dex)"

# oauth2-proxy is a Go program: install the pinned version with `go install`
# (outside gatehouse's module, so go.mod does not change) unless the binary
# there already is that version.
if ! "$OAUTH2_PROXY" --version 2>/dev/null | grep -qF " $OAUTH2_PROXY_VERSION "; then
	[[ $OAUTH2_PROXY == "$ROOT/bin/oauth2-proxy" ]] ||
		die "OAUTH2_PROXY=$OAUTH2_PROXY is not oauth2-proxy $OAUTH2_PROXY_VERSION"
	log "installing oauth2-proxy $OAUTH2_PROXY_VERSION into $ROOT/bin"
	GOBIN=$ROOT/bin go install "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION"
fi

# port_free PORT fails if anything accepts connections on 127.0.0.1:PORT
# (a listener on 0.0.0.0 or [::] included).
port_free() {
	if timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; then
		die "port $HOST:$1 is already in use; free it or choose another (${PORT_VARS[*]})"
	fi
}

ports=()
for v in "${PORT_VARS[@]}"; do ports+=("${!v}"); done
if [[ $(printf '%s\n' "${ports[@]}" | sort -u | wc -l) != "${#ports[@]}" ]]; then
	die "the ${#ports[@]} ports must differ: ${ports[*]}"
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

log "building gatehouse, bench/credentials and bench/floor into $WORK, and bin/dex (make dex)"
go build -o "$GATEHOUSE" ./cmd/gatehouse
CREDENTIALS=$WORK/credentials
go build -o "$CREDENTIALS" ./bench/credentials
FLOOR=$WORK/floor
go build -o "$FLOOR" ./bench/floor
make -s dex >&2
DEX=$ROOT/bin/dex

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

# wait_file PID FILE waits (up to 30 s) until FILE exists, failing if the
# process exits.
wait_file() {
	local deadline=$((SECONDS + 30))
	until [[ -s $2 ]]; do
		alive "$1"
		((SECONDS < deadline)) || die "${NAME[$1]} wrote no $2 after 30s"
		sleep 0.05
	done
}

# Issuers and secrets. Every secret is fresh for this run and lives in $WORK
# (mode 0600), referenced from the configurations as file:PATH.
DEX_ISSUER=http://$HOST:$DEX_PORT/dex
TOKEN_ISSUER=http://$HOST:$ISSUER_PORT
SESSION_KEY_FILE=$WORK/session.key
GATEHOUSE_CLIENT_SECRET_FILE=$WORK/gatehouse-client.secret
ASSERTION_KEY_FILE=$WORK/assertion.pem
TOKEN_FILE=$WORK/access-token
(
	umask 077
	head -c 32 /dev/urandom | base64 >"$SESSION_KEY_FILE"
	# No trailing newline: oauth2-proxy reads a secret file byte for byte.
	printf '%s' "$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')" >"$GATEHOUSE_CLIENT_SECRET_FILE"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$ASSERTION_KEY_FILE" 2>/dev/null
) || die "could not write the secrets in $WORK"
# oauth2-proxy reads its client secret from a file and its cookie secret
# from the environment (OAUTH2_PROXY_COOKIE_SECRET), so neither is in argv.
O2P_CLIENT_SECRET_FILE=$WORK/oauth2-proxy-client.secret
(umask 077 && printf '%s' "$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')" >"$O2P_CLIENT_SECRET_FILE")
O2P_COOKIE_SECRET=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | head -c 32)

# render TEMPLATE OUT replaces the @NAME@ fields of a config template.
render() {
	sed -e "s|@DEMO_PORT@|$DEMO_PORT|g" -e "s|@HAPROXY_PORT@|$HAPROXY_PORT|g" \
		-e "s|@SPOE_PORT@|$SPOE_PORT|g" -e "s|@HAPROXY_SPOE_PORT@|$HAPROXY_SPOE_PORT|g" \
		-e "s|@HAPROXY_INLINE_PORT@|$HAPROXY_INLINE_PORT|g" -e "s|@GATEHOUSE_PROXY_PORT@|$GATEHOUSE_PROXY_PORT|g" \
		-e "s|@SPOE_CONF@|$WORK/spoe-gatehouse.conf|g" \
		-e "s|@GATEHOUSE_PORT@|$GATEHOUSE_PORT|g" -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" \
		-e "s|@AUDIT_FILE@|$AUDIT|g" -e "s|@AUTH_HOST@|$AUTH_HOST|g" \
		-e "s|@SESSION_KEY_FILE@|$SESSION_KEY_FILE|g" -e "s|@ASSERTION_KEY_FILE@|$ASSERTION_KEY_FILE|g" \
		-e "s|@GATEHOUSE_CLIENT_SECRET_FILE@|$GATEHOUSE_CLIENT_SECRET_FILE|g" \
		-e "s|@DEX_ISSUER@|$DEX_ISSUER|g" -e "s|@TOKEN_ISSUER@|$TOKEN_ISSUER|g" \
		-e "s|@TOKEN_AUDIENCE@|$TOKEN_AUDIENCE|g" "$1" >"$2"
	if grep -q '@[A-Z_]*@' "$2"; then die "unreplaced field in $2"; fi
}

# --- 2. contenders ----------------------------------------------------------

render "$BENCH/haproxy.cfg" "$WORK/haproxy.cfg"
render "$BENCH/spoe-gatehouse.conf" "$WORK/spoe-gatehouse.conf"
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

# Dex is oauth2-proxy's provider (its cookie comes from a real login there)
# and gatehouse's (an unauthenticated request is sent there to sign in).
# Both relying parties are registered, with their callbacks.
"$CREDENTIALS" dex-config -issuer "$DEX_ISSUER" -out "$WORK/dex.json" \
	-client "gatehouse=$(<"$GATEHOUSE_CLIENT_SECRET_FILE")=http://$AUTH_HOST/.gatehouse/callback" \
	-client "oauth2-proxy=$(<"$O2P_CLIENT_SECRET_FILE")=http://$HOST:$OAUTH2_PROXY_PORT/oauth2/callback" ||
	die "could not write the Dex configuration"
start dex "$WORK/dex.log" "$DEX" serve "$WORK/dex.json"
DEX_PID=$LAST_PID
wait_ready "$DEX_PID" "$DEX_ISSUER/.well-known/openid-configuration"

# The bench token issuer: discovery, JWKS, and one access token in
# $TOKEN_FILE, for both gatehouse (identity.bearer) and oauth2-proxy
# (--extra-jwt-issuers).
start issuer "$WORK/issuer.log" "$CREDENTIALS" issuer -addr "$HOST:$ISSUER_PORT" \
	-audience "$TOKEN_AUDIENCE" -token-file "$TOKEN_FILE"
ISSUER_PID=$LAST_PID
wait_ready "$ISSUER_PID" "$TOKEN_ISSUER/.well-known/openid-configuration"
wait_file "$ISSUER_PID" "$TOKEN_FILE"
BEARER_TOKEN=$(<"$TOKEN_FILE")

start gatehouse "$WORK/gatehouse.log" "$GATEHOUSE" serve -config "$WORK/gatehouse.yaml"
GATEHOUSE_PID=$LAST_PID
wait_ready "$GATEHOUSE_PID" "http://$HOST:$ADMIN_PORT/.gatehouse/readyz"
wait_ready "$GATEHOUSE_PID" "http://$HOST:$GATEHOUSE_PORT/hello"

# oauth2-proxy in front of the same demo app, configured like gatehouse's
# protected route: OIDC sign-in at Dex, group staff required, bearer JWTs
# from the bench issuer accepted, identity sent upstream (X-Forwarded-User,
# -Email, -Groups, -Preferred-Username, and the ID token as Authorization:
# Bearer, oauth2-proxy's counterpart of gatehouse's signed assertion). Plain
# HTTP on loopback, so the cookie is not Secure. Its request log (one line
# per request, its default) goes to its output file, as gatehouse's audit
# record goes to a file. Cookie refresh stays off (its default), so it never
# calls Dex while measured. --approval-prompt=auto: the default "force" makes
# Dex show a consent page the login driver does not fill.
start oauth2-proxy "$WORK/oauth2-proxy.log" env OAUTH2_PROXY_COOKIE_SECRET="$O2P_COOKIE_SECRET" \
	"$OAUTH2_PROXY" \
	--http-address="$HOST:$OAUTH2_PROXY_PORT" \
	--upstream="http://$HOST:$DEMO_PORT/" \
	--provider=oidc --oidc-issuer-url="$DEX_ISSUER" \
	--client-id=oauth2-proxy --client-secret-file="$O2P_CLIENT_SECRET_FILE" \
	--redirect-url="http://$HOST:$OAUTH2_PROXY_PORT/oauth2/callback" \
	--scope="openid email profile groups" --approval-prompt=auto --skip-provider-button \
	--cookie-secure=false --email-domain='*' --allowed-group=staff \
	--skip-jwt-bearer-tokens --extra-jwt-issuers="$TOKEN_ISSUER=$TOKEN_AUDIENCE" \
	--pass-user-headers=true --pass-authorization-header=true
O2P_PID=$LAST_PID
wait_ready "$O2P_PID" "http://$HOST:$OAUTH2_PROXY_PORT/ping"

# The floor: the smallest proxy the design allows (net/http's server and an
# httputil.ReverseProxy with Rewrite, nothing else), over gatehouse's
# upstream transport and over net/http's. What gatehouse costs on top of it
# is gatehouse's own.
start floor-h1 "$WORK/floor-h1.log" "$FLOOR" -addr "$HOST:$FLOOR_PORT" \
	-target "http://$HOST:$DEMO_PORT" -transport gatehouse
FLOOR_H1_PID=$LAST_PID
wait_ready "$FLOOR_H1_PID" "http://$HOST:$FLOOR_PORT/hello"
start floor-std "$WORK/floor-std.log" "$FLOOR" -addr "$HOST:$FLOOR_STD_PORT" \
	-target "http://$HOST:$DEMO_PORT" -transport std
FLOOR_STD_PID=$LAST_PID
wait_ready "$FLOOR_STD_PID" "http://$HOST:$FLOOR_STD_PORT/hello"

# Credentials. gatehouse's session is sealed offline with the configured key
# (as gatehouse would seal it after a login at Dex); oauth2-proxy's cookie
# comes from a real login through oauth2-proxy and Dex.
GATEHOUSE_COOKIE=$("$CREDENTIALS" session -key-file "$SESSION_KEY_FILE" -key-id bench \
	-cookie-name gh_session -issuer "$DEX_ISSUER" -provider dex -idle-timeout 8h -absolute-lifetime 12h) ||
	die "could not seal a gatehouse session"
O2P_COOKIE=$("$CREDENTIALS" login -start "http://$HOST:$OAUTH2_PROXY_PORT/oauth2/start?rd=%2Fhello" \
	-callback-prefix "http://$HOST:$OAUTH2_PROXY_PORT/oauth2/callback" -cookie-name _oauth2_proxy) ||
	die "could not sign in through oauth2-proxy and Dex"

GH=http://$HOST:$GATEHOUSE_PORT
O2P=http://$HOST:$OAUTH2_PROXY_PORT
declare -A URL=(
	[direct]="http://$HOST:$DEMO_PORT/hello"
	[haproxy]="http://$HOST:$HAPROXY_PORT/hello"
	[gatehouse]="$GH/hello"
	[gatehouse-cookie]="$GH/hello"
	[gatehouse-bearer]="$GH/hello"
	[gatehouse-anon]="$GH/hello"
	[gatehouse-least-conn]="$GH/hello"
	[gatehouse-hash]="$GH/hello"
	[gatehouse-inline]="http://$HOST:$HAPROXY_INLINE_PORT/hello"
	[gatehouse-spoe]="http://$HOST:$HAPROXY_SPOE_PORT/hello"
	[oauth2-proxy-cookie]="$O2P/hello"
	[oauth2-proxy-bearer]="$O2P/hello"
	[floor-h1]="http://$HOST:$FLOOR_PORT/hello"
	[floor-std]="http://$HOST:$FLOOR_STD_PORT/hello"
)
# HDRS holds each contender's request headers, one per line. The
# unauthenticated request is a browser's GET (it asks for HTML).
declare -A HDRS=(
	[gatehouse-cookie]="Host: $AUTH_HOST"$'\n'"Cookie: gh_session=$GATEHOUSE_COOKIE"
	[gatehouse-bearer]="Host: $AUTH_HOST"$'\n'"Authorization: Bearer $BEARER_TOKEN"
	[gatehouse-anon]="Host: $AUTH_HOST"$'\n'"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	[gatehouse-least-conn]="Host: least-conn.bench.test"
	[gatehouse-hash]="Host: hash.bench.test"
	[gatehouse-inline]="Host: $AUTH_HOST"$'\n'"Cookie: gh_session=$GATEHOUSE_COOKIE"
	[gatehouse-spoe]="Host: $AUTH_HOST"$'\n'"Cookie: gh_session=$GATEHOUSE_COOKIE"
	[oauth2-proxy-cookie]="Cookie: $O2P_COOKIE"
	[oauth2-proxy-bearer]="Authorization: Bearer $BEARER_TOKEN"
)
# EXPECT is each contender's expected status: 200, or 302 to sign in.
declare -A EXPECT=([gatehouse-anon]=302)
declare -A PROXY_PID=([haproxy]=$HAPROXY_PID [floor-h1]=$FLOOR_H1_PID [floor-std]=$FLOOR_STD_PID)
for c in "${CONTENDERS[@]}"; do
	case $c in
	gatehouse-inline | gatehouse-spoe) PROXY_PID[$c]="$GATEHOUSE_PID $HAPROXY_PID" ;;
	gatehouse*) PROXY_PID[$c]=$GATEHOUSE_PID ;;
	oauth2-proxy*) PROXY_PID[$c]=$O2P_PID ;;
	esac
done

# hdr_args CONTENDER fills HARGS with "-H header" pairs for curl and wrk.
hdr_args() {
	local h
	HARGS=()
	while IFS= read -r h; do
		[[ -z $h ]] || HARGS+=(-H "$h")
	done <<<"${HDRS[$1]:-}"
}

# Every contender must answer its expected status: 200 with the demo app's
# exact 13-byte body, or 302 to Dex's authorization endpoint.
printf 'hello, world\n' >"$WORK/expected"
for c in "${CONTENDERS[@]}"; do
	hdr_args "$c"
	want=${EXPECT[$c]:-200}
	out=$(curl -sS -o "$WORK/got" -w '%{http_code} %{redirect_url}' --max-time 5 "${HARGS[@]}" "${URL[$c]}") ||
		die "$c: GET ${URL[$c]} failed"
	code=${out%% *}
	[[ $code == "$want" ]] || die "$c: GET ${URL[$c]} answered $code, want $want"
	if [[ $want == 200 ]]; then
		cmp -s "$WORK/expected" "$WORK/got" || die "$c: GET ${URL[$c]} body differs from 'hello, world\\n'"
	elif [[ ${out#* } != "$DEX_ISSUER/auth?"* ]]; then
		die "$c: GET ${URL[$c]} redirects to '${out#* }', want $DEX_ISSUER/auth?..."
	fi
done
# The authenticated contenders must deliver the bench user's identity to the
# app: the demo app echoes the request headers at /headers.json.
for c in gatehouse-cookie gatehouse-bearer gatehouse-inline gatehouse-spoe oauth2-proxy-cookie oauth2-proxy-bearer; do
	[[ " ${CONTENDERS[*]} " == *" $c "* ]] || continue
	hdr_args "$c"
	curl -sS -o "$WORK/got" --max-time 5 "${HARGS[@]}" "${URL[$c]%/hello}/headers.json" ||
		die "$c: GET /headers.json failed"
	case $c in
	gatehouse*) names=(X-Gatehouse-User X-Gatehouse-Email X-Gatehouse-Groups X-Gatehouse-Assertion) ;;
	*) names=(X-Forwarded-User X-Forwarded-Email X-Forwarded-Groups Authorization) ;;
	esac
	for h in "${names[@]}" ada@bench.example staff; do
		grep -qF "$h" "$WORK/got" ||
			die "$c: the app did not receive $h: $(head -c 600 "$WORK/got")"
	done
done
# The audit writer flushes every 200 ms; give it a few seconds.
deadline=$((SECONDS + 5))
until [[ -s $AUDIT ]]; do
	((SECONDS < deadline)) || die "gatehouse wrote no audit record to $AUDIT"
	sleep 0.05
done

# --- 3. measurement ---------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID... prints utime+stime of the whole processes (all threads), in
# clock ticks, from /proc/PID/stat (fields 14 and 15; the command name in
# field 2 may hold spaces, so the line is cut after its closing parenthesis).
cpu_ticks() {
	local s pid t=0
	for pid in "$@"; do
		s=$(<"/proc/$pid/stat")
		s=${s##*) }
		read -r -a f <<<"$s"
		t=$((t + f[11] + f[12]))
	done
	echo "$t"
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

# run_wrk CONTENDER CONNS SECONDS runs wrk against the contender's URL with
# its headers (tracked like the servers, so an interrupt stops it too) and
# fills W.
run_wrk() {
	local url=${URL[$1]} conns=$2 secs=$3 threads=2 out line kv
	((conns > 1)) || threads=1
	out=$WORK/wrk.out
	hdr_args "$1"
	start wrk "$out" wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 5s --latency \
		"${HARGS[@]}" -s "$BENCH/report.lua" "$url"
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

# O2P_LOG is oauth2-proxy's output: its request log lines end with
# '"/hello" HTTP/1.1 "<user agent>" STATUS SIZE DURATION'.
O2P_LOG=${LOGF[$O2P_PID]}

# o2p_statuses OFFSET prints the statuses of the request log lines written
# after byte OFFSET of O2P_LOG, one per line. oauth2-proxy logs a request
# whose client went away (wrk abandons its in-flight requests when it stops)
# as 502 after "Error proxying to upstream server: context canceled"; as
# many 502s as there are such lines are printed as 499, gatehouse's status
# for the same event.
o2p_statuses() {
	tail -c +"$(($1 + 1))" "$O2P_LOG" | awk '
		/Error proxying to upstream server: context canceled/ { gone++; next }
		$(NF-4) == "HTTP/1.1" && $(NF-5) == "\"/hello\"" { s[n++] = $(NF-2) }
		END { for (i = 0; i < n; i++) { if (s[i] == 502 && gone > 0) { s[i] = 499; gone-- } print s[i] } }'
}

# o2p_settle OFFSET N waits (up to 5 s) until oauth2-proxy has logged at
# least N requests after OFFSET and prints the count.
o2p_settle() {
	local n deadline=$((SECONDS + 5))
	while :; do
		n=$(o2p_statuses "$1" | wc -l)
		if ((n >= $2 || SECONDS >= deadline)); then
			echo "$n"
			return
		fi
		sleep 0.05
	done
}

# status_summary WANT reads statuses, one per line, and prints those other
# than WANT as "499×3, 302×1".
status_summary() {
	{ grep -vx "$1" || true; } | sort | uniq -c |
		awk '{ printf "%s%s×%s", (NR > 1 ? ", " : ""), $2, $1 }'
}

# unexpected WANT reads statuses, one per line, and counts those that are
# neither WANT nor 499 (wrk abandons its in-flight requests when it stops,
# and gatehouse records those as 499).
unexpected() {
	{ grep -vx -e "$1" -e 499 || true; } | wc -l
}

# measure CONTENDER CONNS ROUND runs one measured run and stores its numbers.
measure() {
	local c=$1 conns=$2 round=$3 pid="" t0=0 t1=0 d0=0 d1=0 k errs records=0 statuses
	local o0 o1 want=${EXPECT[$1]:-200} off=0 bad
	pid=${PROXY_PID[$c]:-}
	alive "$DEMO_PID"
	for p in $pid; do alive "$p"; done
	[[ $c != gatehouse* ]] || : >"$AUDIT" # O_APPEND: gatehouse keeps writing at the new end
	[[ $c != oauth2-proxy* ]] || off=$(stat -c %s "$O2P_LOG")
	o0=$(other_ticks)
	# shellcheck disable=SC2086 # $pid is one PID or two
	[[ -z $pid ]] || t0=$(cpu_ticks $pid)
	d0=$(cpu_ticks "$DEMO_PID")
	run_wrk "$c" "$conns" "$DURATION"
	# shellcheck disable=SC2086
	[[ -z $pid ]] || t1=$(cpu_ticks $pid)
	d1=$(cpu_ticks "$DEMO_PID")
	o1=$(other_ticks)
	alive "$DEMO_PID"
	for p in $pid; do alive "$p"; done

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
	# wrk counts only statuses of 400 and above as errors, so the proxies'
	# own records are checked for any status but the expected one: a 302
	# to sign in where 200 was expected (a credential refused), or 200
	# where 302 was.
	case $c in
	gatehouse*)
		records=$(audit_settle "${W[requests]}")
		grep -o '"status":[0-9]*' "$AUDIT" | cut -d: -f2 >"$WORK/statuses" || true
		;;
	oauth2-proxy*)
		records=$(o2p_settle "$off" "${W[requests]}")
		o2p_statuses "$off" >"$WORK/statuses"
		;;
	*) records=- ;;
	esac
	if [[ $records == - ]]; then
		R[$k,audit]=-
	else
		# Statuses other than the expected one, as "499×3".
		statuses=$(status_summary "$want" <"$WORK/statuses")
		bad=$(unexpected "$want" <"$WORK/statuses")
		((records >= W[requests])) || errs+="${errs:+ }log-short=$((W[requests] - records))"
		((bad == 0)) || errs+="${errs:+ }unexpected-status=$bad"
		R[$k,audit]="$records${statuses:+ ($statuses)}"
	fi
	R[$k,errors]=${errs:-0}
	[[ -z $errs ]] || ERRORS=$((ERRORS + 1))
	log "$(printf 'round %d  %-19s c=%-2d  %7s req/s  p50 %5d µs  p99 %6d µs  proxy CPU %6s µs/req  other CPU %3s%%  errors: %s' \
		"$round" "$c" "$conns" "${R[$k,rps]}" "${W[p50_us]}" "${W[p99_us]}" "${R[$k,cpu]}" "${R[$k,other]}" "${R[$k,errors]}")"
}

total=$((${#CONTENDERS[@]} * (WARMUP + ${#CONNS[@]} * ROUNDS * DURATION)))
log "measuring: ${#CONTENDERS[@]} contenders x ${#CONNS[@]} loads x $ROUNDS rounds x ${DURATION}s (about $((total / 60 + 1)) min)"
busy_check
for c in "${CONTENDERS[@]}"; do
	log "warm-up: $c, 64 connections, ${WARMUP}s"
	run_wrk "$c" 64 "$WARMUP"
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
	[[ -v R[$1,$2,1,$3] ]] || { echo -; return; } # that load was not run
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
	echo "$(haproxy -v | head -n 1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), oauth2-proxy $OAUTH2_PROXY_VERSION, gatehouse at $gitrev."
	echo "GET /hello (13-byte body), $ROUNDS interleaved rounds of ${DURATION}s per cell after a ${WARMUP}s warm-up;"
	echo "each cell is the median across rounds. 1 connection: wrk -t1 -c1; 64 connections: wrk -t2 -c64."
	echo "Proxy CPU is the proxy process' user+system CPU time per request (— for direct)."
	echo "gatehouse is the passthrough route; gatehouse-cookie and -bearer send a valid session cookie or"
	echo "JWT access token to the protected route (group staff; identity headers and the signed assertion"
	echo "upstream); gatehouse-anon sends no credential there and gets 302 to sign in (its expected status);"
	echo "gatehouse-inline is HAProxy in front of gatehouse (topology A: PROXY v2 to a second gatehouse listener) and"
	echo "gatehouse-spoe is HAProxy asking gatehouse's SPOE agent and forwarding to the app itself (topology B),"
	echo "both with the session cookie on the protected route; their proxy CPU is HAProxy's plus gatehouse's."
	echo "oauth2-proxy-cookie and -bearer send a cookie from a login at Dex or the same JWT to oauth2-proxy."
	echo "gatehouse-least-conn and gatehouse-hash are the passthrough through pools with balance least_conn and"
	echo "hash (on the client IP) instead of round_robin."
	echo "floor-h1 and floor-std are the smallest proxy the design allows (bench/floor: net/http's server and"
	echo "an httputil.ReverseProxy with Rewrite, nothing else) over gatehouse's upstream transport and net/http's."
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
	ran() { [[ " ${CONTENDERS[*]} " == *" $1 "* ]]; }
	h64=- h1=-
	! ran haproxy || { h64=$(med haproxy 64 rps) h1=$(med haproxy 1 p99); }
	if ran haproxy && ran gatehouse; then
		g64=$(med gatehouse 64 rps) g1=$(med gatehouse 1 p99)
		awk -v h="$h64" -v g="$g64" 'BEGIN {
			if (h == "-") exit
			r = g / h; printf "- gatehouse req/s at 64 connections is %.0f%% of HAProxy'"'"'s (%.0f vs %.0f; target at least 60%%): %s.\n",
				100 * r, g, h, ((r >= 0.60) ? "met" : "NOT met") }'
		awk -v h="$h1" -v g="$g1" 'BEGIN {
			if (h == "-") exit
			d = g - h; printf "- gatehouse p99 at 1 connection is %+.3f ms from HAProxy'"'"'s (%.3f vs %.3f ms; target within 0.3 ms): %s.\n",
				d / 1000, g / 1000, h / 1000, ((d <= 300) ? "met" : "NOT met") }'
	fi
	for cred in cookie bearer; do
		ran haproxy && ran "gatehouse-$cred" && ran "oauth2-proxy-$cred" || continue
		awk -v cred="$cred" -v h="$h64" -v g="$(med "gatehouse-$cred" 64 rps)" -v o="$(med "oauth2-proxy-$cred" 64 rps)" 'BEGIN {
			if (h == "-") exit
			r = g / h; m = g / o
			printf "- gatehouse with a %s at 64 connections is %.0f%% of HAProxy passthrough'"'"'s req/s (%.0f vs %.0f; target at least 50%%): %s;", cred, 100 * r, g, h, ((r >= 0.50) ? "met" : "NOT met")
			printf " %.1f× oauth2-proxy'"'"'s with a %s (%.0f; target at least 8×): %s.\n", m, cred, o, ((m >= 8) ? "met" : "NOT met") }'
	done
	if ran haproxy && ran gatehouse-spoe; then
		awk -v h="$h64" -v g="$(med gatehouse-spoe 64 rps)" 'BEGIN {
			if (h == "-") exit
			r = g / h; printf "- HAProxy with gatehouse'"'"'s SPOE verdict (topology B, session cookie) at 64 connections is %.0f%% of HAProxy passthrough'"'"'s req/s (%.0f vs %.0f; target at least 60%%): %s.\n",
				100 * r, g, h, ((r >= 0.60) ? "met" : "NOT met") }'
	fi
	if ran haproxy && ran gatehouse-inline; then
		awk -v h="$h64" -v g="$(med gatehouse-inline 64 rps)" 'BEGIN {
			if (h == "-") exit
			printf "- HAProxy in front of gatehouse (topology A, session cookie) at 64 connections is %.0f%% of HAProxy passthrough'"'"'s req/s (%.0f vs %.0f; no target).\n",
				100 * g / h, g, h }'
	fi
	for c in floor-h1 floor-std; do
		ran haproxy && ran "$c" || continue
		awk -v c="$c" -v h="$h64" -v g="$(med "$c" 64 rps)" -v gc="$(med "$c" 64 cpu)" 'BEGIN {
			if (h == "-") exit
			printf "- %s (a bare ReverseProxy, no gatehouse code) at 64 connections is %.0f%% of HAProxy passthrough'"'"'s req/s (%.0f vs %.0f), at %.1f µs of CPU per request (no target: what the design costs by itself).\n", c, 100 * g / h, g, h, gc }'
	done
	for c in gatehouse-least-conn gatehouse-hash; do
		ran gatehouse && ran "$c" || continue
		awk -v c="$c" -v r="$(med gatehouse 64 rps)" -v g="$(med "$c" 64 rps)" -v rc="$(med gatehouse 64 cpu)" -v gc="$(med "$c" 64 cpu)" 'BEGIN {
			if (r == "-") exit
			printf "- %s at 64 connections: %.0f req/s, %+.1f%% against round robin'"'"'s %.0f; CPU %.1f against %.1f µs/req (target: no measurable cost).\n", c, g, 100 * (g - r) / r, r, gc, rc }'
	done
	if ((ERRORS > 0)); then
		echo "- $ERRORS run(s) had errors (see the errors column): these figures do not measure a working proxy."
	fi
	echo
	echo "## Raw rounds"
	echo
	echo "App CPU is the demo app's CPU time per request."
	echo "Other CPU is what other processes and kernel threads used during the run, as a share of the machine."
	echo "Audit is the number of records the proxy wrote during the run (gatehouse's audit records,"
	echo "oauth2-proxy's request log lines; at least the requests wrk counted), with the statuses other"
	echo "than the contender's expected one: wrk abandons its in-flight requests when it stops (499)."
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
	die "$ERRORS run(s) saw socket errors, error or unexpected statuses, or missing audit records or request log lines; see the errors column"
fi
