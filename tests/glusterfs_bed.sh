#!/usr/bin/env bash
# glusterfs_bed.sh - a GlusterFS volume on loopback, mounted twice: two "machines" on one.
#
#   tests/glusterfs_bed.sh up       start glusterd, create and start the volume, mount it twice
#   tests/glusterfs_bed.sh down     unmount, stop every process of the bed (by pid), delete it
#   tests/glusterfs_bed.sh status   exit 0 when the bed is up and both mounts answer
#   tests/glusterfs_bed.sh env      print the bed's variables (after up)
#
# up and down are idempotent: up reuses what already runs and repairs what does not, down on
# nothing does nothing.  up prints KEY=VALUE lines (MOUNT1, MOUNT2, BRICK, VOLUME, the pids).
#
# How (measured on this project's 2-core machine, Debian 12, glusterfs 10.3):
#   - glusterd gets its own volfile: state in $GLUSTER_BED_DIR/state, its CLI socket in
#     $GLUSTER_BED_DIR/run, listening on 127.0.0.2 only.  Gluster refuses localhost and
#     127.0.0.1 as a brick host, but any other loopback address is "this machine".
#   - one brick, a plain directory, so the volume is created with `force`;
#   - `mount -t glusterfs` twice: two FUSE clients (glusterfs processes), each with its own
#     kernel caches and its own write-behind, as two machines would have.  Volume options
#     stay at their defaults (performance.write-behind on).
#   - every process of the bed is found by pid (pid files, or a cmdline naming the bed's
#     directory) and stopped by pid: nothing else on the machine is touched.
#
# Needs root, /dev/fuse and the Debian packages glusterfs-server and glusterfs-client; when
# glusterd is missing and apt-get exists they are installed (GLUSTER_BED_INSTALL=0 turns that
# off).  Exits 77 with the reason on stderr when this machine cannot run a FUSE mount at all.
set -euo pipefail

BED=${GLUSTER_BED_DIR:-/tmp/skyrl-fdlog-gluster}
HOST=${GLUSTER_BED_HOST:-127.0.0.2}
VOLUME=${GLUSTER_BED_VOLUME:-fdlogbed}
PORT=${GLUSTER_BED_PORT:-24007}
STATE=$BED/state
RUN=$BED/run
LOGS=$BED/log
BRICK=$BED/brick
MOUNTS=("$BED/mnt1" "$BED/mnt2")
SOCKET=$RUN/glusterd.socket
PACKAGES=(glusterfs-server glusterfs-client)

say() { echo "glusterfs_bed: $*" >&2; }
cannot_run() { say "CANNOT RUN HERE: $*"; exit 77; }
cli() { gluster --mode=script --glusterd-sock="$SOCKET" --log-file="$LOGS/cli.log" "$@"; }

alive() { [[ -n ${1:-} && -d /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# The pids of processes whose command line mentions the bed's directory (brick, clients, glusterd).
bed_pids() {
    local dir pid
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        [[ $pid == "$$" ]] && continue
        if tr '\0' ' ' <"$dir/cmdline" 2>/dev/null | grep -qF -- "$BED/"; then
            echo "$pid"
        fi
    done
}

# The glusterfs client process serving one mount point: its last argument is the mount point.
client_pid() {
    local mount=$1 dir args
    for dir in /proc/[0-9]*; do
        mapfile -d '' -t args <"$dir/cmdline" 2>/dev/null || continue
        ((${#args[@]})) || continue
        [[ ${args[0]} == */glusterfs && ${args[-1]} == "$mount" ]] && echo "${dir#/proc/}"
    done
    return 0
}

stop_pid() {
    local pid=$1 i
    alive "$pid" || return 0
    kill -CONT "$pid" 2>/dev/null || true   # a test may have left it stopped
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do alive "$pid" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do alive "$pid" || return 0; sleep 0.1; done
    say "pid $pid did not exit"
}

check_machine() {
    [[ $(id -u) == 0 ]] || cannot_run "needs root to run glusterd and mount FUSE (uid $(id -u))"
    [[ -c /dev/fuse ]] || cannot_run "no /dev/fuse: this kernel or container offers no FUSE"
    grep -qw fuse /proc/filesystems || modprobe fuse 2>/dev/null || true
    grep -qw fuse /proc/filesystems || cannot_run "the kernel lists no fuse filesystem"
    { exec 9<>/dev/fuse; } 2>/dev/null || cannot_run "cannot open /dev/fuse (no permission in this container)"
    exec 9>&-
    if ! command -v glusterd >/dev/null || ! command -v mount.glusterfs >/dev/null; then
        if [[ ${GLUSTER_BED_INSTALL:-1} != 0 ]] && command -v apt-get >/dev/null; then
            say "installing ${PACKAGES[*]}"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >&2
            apt-get install -y -qq "${PACKAGES[@]}" >&2
        fi
        command -v glusterd >/dev/null || cannot_run "glusterd missing: apt-get install ${PACKAGES[*]}"
    fi
}

start_glusterd() {
    local pid
    pid=$(cat "$RUN/glusterd.pid" 2>/dev/null || true)
    if alive "$pid" && cli volume list >/dev/null 2>&1; then
        return 0
    fi
    stop_pid "$pid"
    mkdir -p "$STATE" "$RUN" "$LOGS"
    cat >"$BED/glusterd.vol" <<EOF
volume management
    type mgmt/glusterd
    option working-directory $STATE
    option transport-type socket
    option transport.socket.bind-address $HOST
    option transport.socket.listen-port $PORT
    option glusterd-sockfile $SOCKET
    option ping-timeout 0
    option event-threads 1
end-volume
EOF
    glusterd -f "$BED/glusterd.vol" -p "$RUN/glusterd.pid" -l "$LOGS/glusterd.log"
    local i
    for ((i = 0; i < 100; i++)); do
        cli volume list >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    say "glusterd did not answer; its log:"
    tail -20 "$LOGS/glusterd.log" >&2 || true
    exit 1
}

start_volume() {
    if ! cli volume list 2>/dev/null | grep -qx "$VOLUME"; then
        rm -rf "$BRICK"
        mkdir -p "$BRICK"
        cli volume create "$VOLUME" "$HOST:$BRICK" force >/dev/null
    fi
    # `start force` also restarts a brick process that died (or that a test killed).
    alive "$(brick_pid)" || cli volume start "$VOLUME" force >/dev/null
    local i
    for ((i = 0; i < 100; i++)); do
        alive "$(brick_pid)" && return 0
        sleep 0.1
    done
    say "the brick did not come online"
    exit 1
}

# The brick process's pid while glusterd sees it online, else nothing.
brick_pid() {
    cli --xml volume status "$VOLUME" 2>/dev/null |
        awk '/<status>1<\/status>/ {online = 1} online && /<pid>/ {gsub(/[^0-9]/, ""); print; exit}'
}

mount_answers() { timeout 5 stat -f "$1" >/dev/null 2>&1 && [[ $(timeout 5 stat -f -c %T "$1") == fuse* ]]; }

mount_all() {
    local mount index=0
    for mount in "${MOUNTS[@]}"; do
        index=$((index + 1))
        if mountpoint -q "$mount" 2>/dev/null && mount_answers "$mount"; then
            continue
        fi
        umount -l "$mount" 2>/dev/null || true
        local stale
        for stale in $(client_pid "$mount"); do stop_pid "$stale"; done
        mkdir -p "$mount"
        mount -t glusterfs -o "log-file=$LOGS/mnt$index.log" "$HOST:/$VOLUME" "$mount"
        mount_answers "$mount" || { say "mount $mount does not answer"; exit 1; }
    done
}

write_env() {
    local pids
    pids="glusterd=$(cat "$RUN/glusterd.pid") brick=$(brick_pid)"
    pids+=" client1=$(client_pid "${MOUNTS[0]}") client2=$(client_pid "${MOUNTS[1]}")"
    {
        echo "BED=$BED"
        echo "VOLUME=$VOLUME"
        echo "HOST=$HOST"
        echo "BRICK=$BRICK"
        echo "MOUNT1=${MOUNTS[0]}"
        echo "MOUNT2=${MOUNTS[1]}"
        echo "GLUSTERD_PID=$(cat "$RUN/glusterd.pid")"
        echo "BRICK_PID=$(brick_pid)"
        echo "CLIENT1_PID=$(client_pid "${MOUNTS[0]}")"
        echo "CLIENT2_PID=$(client_pid "${MOUNTS[1]}")"
        echo "SOCKET=$SOCKET"
    } >"$RUN/env.tmp"
    mv "$RUN/env.tmp" "$RUN/env"
    echo "$pids" | tr ' ' '\n' | cut -d= -f2 >"$RUN/pids"
}

up() {
    check_machine
    local start=$SECONDS
    mkdir -p "$BED" "$RUN" "$LOGS"
    start_glusterd
    start_volume
    mount_all
    write_env
    cat "$RUN/env"
    say "up in $((SECONDS - start)) s"
}

down() {
    [[ -d $BED ]] || return 0
    local mount pid
    for mount in "${MOUNTS[@]}"; do
        for pid in $(client_pid "$mount"); do kill -CONT "$pid" 2>/dev/null || true; done
        if mountpoint -q "$mount" 2>/dev/null; then
            umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
        fi
        for pid in $(client_pid "$mount"); do stop_pid "$pid"; done
    done
    for pid in $(cat "$RUN/pids" 2>/dev/null) $(cat "$RUN/glusterd.pid" 2>/dev/null); do
        # Only pids that still belong to the bed: a recycled pid is someone else's.
        if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE "gluster"; then
            stop_pid "$pid"
        fi
    done
    for pid in $(bed_pids); do stop_pid "$pid"; done
    rm -rf "$BED"
    rm -rf "/var/run/gluster/vols/$VOLUME"
}

status() {
    [[ -f $RUN/env ]] || { say "not up"; return 1; }
    alive "$(cat "$RUN/glusterd.pid" 2>/dev/null)" || { say "glusterd not running"; return 1; }
    local mount
    for mount in "${MOUNTS[@]}"; do
        mountpoint -q "$mount" && mount_answers "$mount" || { say "$mount not mounted"; return 1; }
    done
    cat "$RUN/env"
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
env) cat "$RUN/env" ;;
*) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
