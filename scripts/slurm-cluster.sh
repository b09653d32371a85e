#!/usr/bin/env bash
# A real two-node Slurm cluster on this one machine, for tests and CI.
#
#   scripts/slurm-cluster.sh up      install (if missing), configure, start, wait for idle nodes
#   scripts/slurm-cluster.sh down    stop every daemon this script started
#   scripts/slurm-cluster.sh status  print the daemons and `sinfo`; exit 0 only when both nodes are up
#
# Needs root and Debian/Ubuntu (apt). Nodes n1 and n2 are two `slurmd -N` on this host
# (127.0.0.1, ports 17001-17002, 4 CPUs each). No systemd: the daemons are started by hand.
# Every `up`/`down` is idempotent. Config goes to /etc/slurm/slurm.conf; state, pid and log
# files go under $EZPZ_SLURM_STATE (default /var/lib/ezpz-slurm), never into the repository.
set -euo pipefail

STATE=${EZPZ_SLURM_STATE:-/var/lib/ezpz-slurm}
CONF=/etc/slurm/slurm.conf
NODES=(n1 n2)
WAIT_S=${EZPZ_SLURM_WAIT_S:-30}
HOST=$(hostname -s)

die() { echo "slurm-cluster: error: $*" >&2; exit 1; }
say() { echo "slurm-cluster: $*" >&2; }

# pid_alive FILE: the pid in FILE names a live process.
pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    local missing=()
    for bin in slurmctld:slurm-wlm slurmd:slurm-wlm sinfo:slurm-wlm munged:munge; do
        command -v "${bin%%:*}" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "${bin%%:*}" >/dev/null 2>&1 \
            || missing+=("${bin##*:}")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "slurm-wlm/munge missing and no apt-get here; install them by hand"
    say "installing slurm-wlm munge (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null; } \
        || die "apt-get install slurm-wlm munge failed"
}

write_conf() {
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/log"
    local new
    new=$(cat <<EOF
# Written by ezpz scripts/slurm-cluster.sh: two fake nodes on one host, for tests.
ClusterName=ezpz
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Lets the declared CPUs exceed the real cores of this machine.
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPort=6817
StateSaveLocation=${STATE}/ctld
SlurmdSpoolDir=${STATE}/d-%n
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd-%n.pid
SlurmctldLogFile=${STATE}/log/slurmctld.log
SlurmdLogFile=${STATE}/log/slurmd-%n.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
NodeName=n[1-2] NodeHostname=${HOST} NodeAddr=127.0.0.1 Port=[17001-17002] CPUs=4 State=UNKNOWN
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
)
    if [[ ! -f $CONF ]] || [[ $(cat "$CONF") != "$new" ]]; then
        printf '%s\n' "$new" >"$CONF"
        CONF_CHANGED=1
    fi
}

add_hosts() {
    # MASTER_ADDR=n1 must resolve for torch rendezvous.
    grep -Eq '^127\.0\.0\.1([[:space:]].*)?[[:space:]]n1([[:space:]]|$)' /etc/hosts \
        || echo "127.0.0.1 n1 n2" >>/etc/hosts
}

start_munge() {
    if [[ -S /run/munge/munge.socket.2 ]] && pid_alive /run/munge/munged.pid; then return 0; fi
    install -d -o munge -g munge -m 0755 /run/munge
    [[ -s /etc/munge/munge.key ]] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
        chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }
    runuser -u munge -- /usr/sbin/munged --force || die "munged did not start (see /var/log/munge/munged.log)"
}

start_slurm() {
    local restart=${CONF_CHANGED:-0}
    if ((restart)); then stop_slurm; fi
    if ! pid_alive "$STATE/slurmctld.pid"; then
        # -c: a cold start; jobs from an earlier cluster are of no use to tests.
        /usr/sbin/slurmctld -c || die "slurmctld did not start (see $STATE/log/slurmctld.log)"
    fi
    for n in "${NODES[@]}"; do
        if ! pid_alive "$STATE/slurmd-$n.pid"; then
            mkdir -p "$STATE/d-$n"
            /usr/sbin/slurmd -N "$n" || die "slurmd -N $n did not start (see $STATE/log/slurmd-$n.log)"
        fi
    done
}

# node_states: "n1 idle" lines, one per node; empty when slurmctld does not answer.
node_states() { sinfo -h -N -o '%N %t' 2>/dev/null | sort -u; }

wait_idle() {
    local deadline=$((SECONDS + WAIT_S)) states
    while ((SECONDS < deadline)); do
        states=$(node_states)
        if [[ $(grep -cE '^n[12] (idle|mix|alloc)$' <<<"$states") == 2 ]]; then return 0; fi
        # A node that was DOWN from an earlier run: ReturnToService=2 brings it back on
        # registration, but a DRAIN needs an explicit resume.
        if grep -qE '^n[12] (drain|drng|down)' <<<"$states"; then
            scontrol update nodename=n[1-2] state=resume >/dev/null 2>&1 || true
        fi
        sleep 0.5
    done
    die "nodes n1,n2 not idle after ${WAIT_S}s; sinfo says: $(node_states | tr '\n' ';') logs: $STATE/log/"
}

# stop_pidfiles FILE...: TERM every live pid named in the files together, wait up to 5 s
# for all of them, KILL what is left, remove the files.
stop_pidfiles() {
    local f pids=()
    for f in "$@"; do
        if pid_alive "$f"; then pids+=("$(cat "$f")"); fi
    done
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "${pids[@]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
    rm -f "$@"
}

stop_slurm() {
    local n files=("$STATE/slurmctld.pid")
    for n in "${NODES[@]}"; do files+=("$STATE/slurmd-$n.pid"); done
    stop_pidfiles "${files[@]}"
}

cmd_up() {
    [[ $(id -u) == 0 ]] || die "needs root (it installs packages and starts slurmctld/slurmd as root)"
    local t0=$SECONDS
    install_packages
    export PATH=$PATH:/usr/sbin
    write_conf
    add_hosts
    start_munge
    start_slurm
    wait_idle
    say "up: n1,n2 idle ($((SECONDS - t0)) s); state and logs in $STATE"
}

cmd_down() {
    [[ $(id -u) == 0 ]] || die "needs root"
    if pid_alive "$STATE/slurmctld.pid"; then scancel --full --user="$(id -un)" 2>/dev/null || true; fi
    stop_slurm
    stop_pidfiles /run/munge/munged.pid
    say "down"
}

cmd_status() {
    local ok=0
    for f in /run/munge/munged.pid "$STATE/slurmctld.pid" "$STATE/slurmd-n1.pid" "$STATE/slurmd-n2.pid"; do
        if pid_alive "$f"; then echo "running  $(basename "$f" .pid) pid $(cat "$f")"; else echo "stopped  $(basename "$f" .pid)"; ok=1; fi
    done
    node_states | sed 's/^/node     /'
    [[ $(node_states | grep -cE '^n[12] (idle|mix|alloc)$') == 2 ]] || ok=1
    return $ok
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
