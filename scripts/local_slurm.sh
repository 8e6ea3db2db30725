#!/usr/bin/env bash
# A real single-host Slurm with two emulated nodes (n1, n2), for tests and CI.
#
#   scripts/local_slurm.sh start    install Debian's slurm + munge if missing (root + apt), start munged, slurmctld, 2 slurmd
#   scripts/local_slurm.sh stop     stop what `start` started (by the pids it recorded)
#   scripts/local_slurm.sh status   the daemons, `sinfo`; exit 1 when the cluster is not up
#   scripts/local_slurm.sh env      print `export SLURM_CONF=…`: eval "$(scripts/local_slurm.sh env)"
#
# Everything lives under MEDQA_SLURM_DIR (default /tmp/medqa-slurm): config, munge key and socket, state, spool,
# logs, and the job-completion log `jobcomp.log` (job states stay there after jobs leave the queue). Nothing in
# /etc is touched. Ports: slurmctld 16817, slurmd 17001-17002.
# Outside CI a machine that cannot install Slurm (not root, no apt) gets a note and exit 0 from `start --if-possible`;
# with CI=true it is an error.
set -euo pipefail

DIR=${MEDQA_SLURM_DIR:-/tmp/medqa-slurm}
CONF=$DIR/slurm.conf
NODES=(n1 n2)
CTLD_PORT=${MEDQA_SLURM_CTLD_PORT:-16817}
NODE_PORT0=${MEDQA_SLURM_NODE_PORT:-17001}
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo ">> local slurm: $*"; }
die() { echo "local slurm: $*" >&2; exit 1; }

installed() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; }

install_packages() {
  installed && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    return 1
  fi
  say "installing ${PACKAGES[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
  }
  installed
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_config() {
  local node_line host
  host=$(hostname)
  # The hardware line as slurmd sees it (CPUs, sockets, cores, memory), for each emulated node.
  node_line=$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //')
  cat >"$CONF.tmp" <<EOF
# Written by scripts/local_slurm.sh: a single-host test cluster with two emulated nodes.
ClusterName=medqa-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
# Finished jobs leave the queue after 5 s, so \`sbatch --wait\` polls every 2 s; impossible requests fail at submit.
MinJobAge=5
EnforcePartLimits=ALL
KillWait=5
ReturnToService=2
JobRequeue=1
MpiDefault=none
$(for i in "${!NODES[@]}"; do echo "NodeName=${NODES[$i]} NodeHostname=$host NodeAddr=127.0.0.1 Port=$((NODE_PORT0 + i)) $node_line State=UNKNOWN"; done)
PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

start_munge() {
  local m=$DIR/munge
  pid_alive "$m/munged.pid" && return 0
  mkdir -p "$m"
  [ -f "$m/munge.key" ] || dd if=/dev/urandom of="$m/munge.key" bs=1024 count=1 status=none
  chown -R munge:munge "$m"
  chmod 755 "$m"
  chmod 400 "$m/munge.key"
  runuser -u munge -- munged --key-file="$m/munge.key" --socket="$m/munge.socket.2" --pid-file="$m/munged.pid" \
    --log-file="$m/munged.log" --seed-file="$m/munged.seed" --num-threads=2
  for _ in $(seq 50); do [ -S "$m/munge.socket.2" ] && return 0; sleep 0.1; done
  die "munged did not start; see $m/munged.log"
}

cmd_start() {
  if ! install_packages; then
    if [ "${CI:-}" = "true" ]; then
      die "CI must run the Slurm tests, but slurm/munge are not installed and cannot be installed here (needs root + apt-get)"
    fi
    echo "note: Slurm is not installed and cannot be installed here (needs root + apt-get); the Slurm tests will be skipped." >&2
    [ "${1:-}" = "--if-possible" ] && exit 0
    exit 1
  fi
  [ "$(id -u)" = 0 ] || die "the local cluster runs its daemons as root (SlurmUser=root); run as root"
  if cmd_status >/dev/null 2>&1; then
    say "already up ($CONF)"
    return 0
  fi
  mkdir -p "$DIR"/{state,run,log} "${NODES[@]/#/$DIR/spool/}"
  write_config
  start_munge
  export SLURM_CONF=$CONF
  pid_alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF"
  for n in "${NODES[@]}"; do
    pid_alive "$DIR/run/slurmd-$n.pid" || slurmd -f "$CONF" -N "$n"
  done
  for _ in $(seq 150); do
    if [ "$(sinfo -h -o '%D %T' 2>/dev/null | awk '$2 == "idle" {n += $1} END {print n + 0}')" = "${#NODES[@]}" ]; then
      say "up: ${#NODES[@]} nodes idle (SLURM_CONF=$CONF)"
      return 0
    fi
    sleep 0.2
  done
  sinfo -N -l >&2 || true
  die "nodes did not become idle; logs in $DIR/log"
}

cmd_stop() {
  local f pid
  for f in "$DIR"/run/slurmd-*.pid "$DIR/run/slurmctld.pid" "$DIR/munge/munged.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$f"
  done
  say "stopped"
}

cmd_status() {
  local ok=0 f
  for f in "$DIR/munge/munged.pid" "$DIR/run/slurmctld.pid" "${NODES[@]/#/$DIR/run/slurmd-}"; do
    f=${f%.pid}.pid
    if pid_alive "$f"; then echo "running  $(basename "$f" .pid) (pid $(cat "$f"))"; else echo "stopped  $(basename "$f" .pid)"; ok=1; fi
  done
  [ $ok = 0 ] && SLURM_CONF=$CONF sinfo -N
  return $ok
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start [--if-possible] | stop | status | env" >&2; exit 2 ;;
esac
