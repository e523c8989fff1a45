#!/usr/bin/env bash
# A local regionstore cluster of processes on loopback: etcd, one placement driver
# (regionstore-pd) and SERVERS regionstore-servers (default 3), each on free ports, with data
# and logs under CLUSTER_DIR (default $TMPDIR/regionstore-cluster).
#
#   scripts/cluster.sh start   starts them, waits until every server's /status says it runs, prints
#                              the addresses (and writes them to $CLUSTER_DIR/cluster.env)
#   scripts/cluster.sh stop    stops them by pid (SIGTERM, then SIGKILL after 15 s)
#   scripts/cluster.sh status  prints what runs
#
# The binaries come from the build (`make build`; BIN_DIR overrides where); servers read CONFIG (default
# etc/regionstore.local.toml: short ticks, sync-log on); the placement driver reads PD_CONFIG
# if set (etc/regionstore-pd.example.toml lists its keys). Each server's command line is kept in server-N.cmd so that a
# driver (region-sim --pd ... --cluster-dir ...) can restart one it killed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(realpath -m "${BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/regionstore/target}/opt}")"
# Absolute: the servers' command lines (server-N.cmd) are rerun from other directories.
dir="$(realpath -m "${CLUSTER_DIR:-${TMPDIR:-/tmp}/regionstore-cluster}")"
servers="${SERVERS:-3}"
config="$(realpath -m "${CONFIG:-$root/etc/regionstore.local.toml}")"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# http_get HOST PORT PATH: the body of the answer (bash's /dev/tcp: no curl needed).
http_get() {
    exec 3<>"/dev/tcp/$1/$2" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
    local reply
    reply="$(timeout 2 cat <&3)" || true
    exec 3<&-
    [[ "$reply" == "HTTP/1."?" 200"* ]] || return 1
    printf '%s\n' "${reply#*$'\r\n\r\n'}"
}

wait_port() { # HOST PORT SECONDS
    local end=$((SECONDS + $3))
    while ((SECONDS < end)); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# alive PIDFILE: whether the pid in it runs the program the file is named for (etcd, pd or a
# server): a pid left by a process that died may have been reused by another.
alive() {
    [ -f "$1" ] || return 1
    local pid want
    pid="$(cat "$1")"
    case "$(basename "$1" .pid)" in
        etcd) want=etcd ;;
        pd) want=regionstore-pd ;;
        *) want=regionstore-server ;;
    esac
    kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$want"
}

stop() {
    [ -d "$dir" ] || { echo "cluster: nothing under $dir"; return 0; }
    # Servers first, then the placement driver, then etcd.
    for f in "$dir"/server-*.pid "$dir"/pd.pid "$dir"/etcd.pid; do
        [ -f "$f" ] || continue
        if alive "$f"; then
            local pid end
            pid="$(cat "$f")"
            kill -CONT "$pid" 2>/dev/null || true
            kill -TERM "$pid" 2>/dev/null || true
            end=$((SECONDS + 15))
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
            echo "cluster: stopped $(basename "$f" .pid) (pid $pid)"
        fi
        rm -f "$f"
    done
}

status() {
    for f in "$dir"/etcd.pid "$dir"/pd.pid "$dir"/server-*.pid; do
        [ -f "$f" ] || continue
        if alive "$f"; then state=running; else state=stopped; fi
        echo "$(basename "$f" .pid): pid $(cat "$f") $state"
    done
}

start() {
    for f in "$dir"/*.pid; do
        if alive "$f"; then
            echo "cluster: already running under $dir (scripts/cluster.sh stop, or make cluster-stop)" >&2
            exit 1
        fi
    done
    for b in regionstore-pd regionstore-server; do
        [ -x "$bin/$b" ] || { echo "cluster: $bin/$b is missing: run make build" >&2; exit 1; }
    done
    command -v etcd >/dev/null || { echo "cluster: etcd is missing: run scripts/install-deps.sh" >&2; exit 1; }
    rm -rf "$dir"
    mkdir -p "$dir"

    local etcd_port peer_port pd_port
    etcd_port="$(free_port)"
    peer_port="$(free_port)"
    etcd --name m1 --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "m1=http://127.0.0.1:$peer_port" > "$dir/etcd.log" 2>&1 &
    echo $! > "$dir/etcd.pid"
    wait_port 127.0.0.1 "$etcd_port" 20 || { echo "cluster: etcd did not start, see $dir/etcd.log" >&2; stop; exit 1; }

    pd_port="$(free_port)"
    local pd_config=()
    [ -n "${PD_CONFIG:-}" ] && pd_config=(--config "$PD_CONFIG")
    "$bin/regionstore-pd" "${pd_config[@]}" --name pd1 --addr "127.0.0.1:$pd_port" \
        --etcd "127.0.0.1:$etcd_port" > "$dir/pd.log" 2>&1 &
    echo $! > "$dir/pd.pid"
    wait_port 127.0.0.1 "$pd_port" 20 || { echo "cluster: pd did not start, see $dir/pd.log" >&2; stop; exit 1; }

    local i port status_port
    for i in $(seq 1 "$servers"); do
        port="$(free_port)"
        status_port="$(free_port)"
        printf '%s\n' "$bin/regionstore-server" "--pd=127.0.0.1:$pd_port" "--addr=127.0.0.1:$port" \
            "--status-addr=127.0.0.1:$status_port" "--data-dir=$dir/server-$i" \
            "--config=$config" > "$dir/server-$i.cmd"
        mapfile -t cmd < "$dir/server-$i.cmd"
        "${cmd[@]}" >> "$dir/server-$i.log" 2>&1 &
        echo $! > "$dir/server-$i.pid"
        echo "$status_port" > "$dir/server-$i.status_port"
    done
    {
        echo "ETCD=127.0.0.1:$etcd_port"
        echo "PD=127.0.0.1:$pd_port"
    } > "$dir/cluster.env"
    for i in $(seq 1 "$servers"); do
        status_port="$(cat "$dir/server-$i.status_port")"
        local body="" end=$((SECONDS + 60))
        while ((SECONDS < end)); do
            body="$(http_get 127.0.0.1 "$status_port" /status 2>/dev/null)" || body=""
            [[ "$body" == *'"running":true'* ]] && break
            body=""
            alive "$dir/server-$i.pid" || break
            sleep 0.2
        done
        if [ -z "$body" ]; then
            echo "cluster: server $i did not come up, see $dir/server-$i.log" >&2
            stop
            exit 1
        fi
        echo "server $i: $(sed -n 3p "$dir/server-$i.cmd" | cut -d= -f2) status 127.0.0.1:$status_port $body"
    done
    echo "etcd: 127.0.0.1:$etcd_port"
    echo "pd: 127.0.0.1:$pd_port"
    echo "data and logs: $dir"
    echo "drive it: $bin/region-sim --pd 127.0.0.1:$pd_port --cluster-dir $dir"
    echo "stop it: make cluster-stop"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
