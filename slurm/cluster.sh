#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for trying and testing sweeps:
#
#   slurm/cluster.sh up       install slurm-wlm/munge/slurmdbd/mariadb if missing, start them, wait for an idle node
#   slurm/cluster.sh down     cancel every job, stop exactly the daemons `up` started (their pid files)
#   slurm/cluster.sh status   daemons, sinfo, squeue
#   eval "$(slurm/cluster.sh env)"   point sinfo/sbatch/squeue/sacct of this shell at the cluster
#
# Everything lives under one directory, $TOYREPRO_SLURM_DIR (default /tmp/toyrepro-slurm):
# conf/ (slurm.conf, slurmdbd.conf, munge.key), state/, spool/, log/, run/ (pid files and
# sockets), mysql/ (the accounting database). Nothing in /etc is changed: clients find the
# cluster through SLURM_CONF, munge through `AuthInfo=socket=` in slurm.conf.
#
# The node is this machine with its real core count and memory (from `slurmd -C`), one
# partition `local` (default), select/cons_tres, proctrack/linuxproc and task/none (no
# cgroups needed, so it also runs in containers). Accounting goes through slurmdbd into a
# private MariaDB: submitit polls `sacct` for job states, which fails without it.
# Daemons run as root (this script must): elsewhere run it with `sudo -E`.
set -euo pipefail

DIR=${TOYREPRO_SLURM_DIR:-/tmp/toyrepro-slurm}
CLUSTER=toyrepro
PARTITION=local
CTLD_PORT=${TOYREPRO_SLURM_PORT:-6817}   # slurmctld; slurmd = +1, slurmdbd = +2, mariadb = +3
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT=$((CTLD_PORT + 3))
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
DAEMONS=(slurmctld slurmd slurmdbd mariadbd munged)   # stop order (reverse of start)

export SLURM_CONF=$DIR/conf/slurm.conf

say() { echo "cluster.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

pid_of() { # the pid in run/<name>.pid if that process is alive
  local f=$DIR/run/$1.pid
  [[ -s $f ]] || return 1
  local pid
  pid=$(<"$f")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 < limit)) || die "$what not ready after ${limit}s; see $DIR/log/"
    sleep 0.2
  done
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return
  [[ $(id -u) == 0 ]] || die "missing packages ${missing[*]}: run \`sudo apt-get install ${missing[*]}\` (or this script with sudo -E)"
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install Slurm and munge with your package manager"
  say "installing ${missing[*]} (apt-get)"
  local t0=$SECONDS
  # the packages' own init scripts must not start system-wide daemons: a policy-rc.d forbids
  # it (Docker images often have one already; it is then left as it is)
  local policy=/usr/sbin/policy-rc.d made_policy=""
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1; fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}")
  "${apt[@]}" >"$DIR/log/apt.log" 2>&1 \
    || { apt-get update -q >>"$DIR/log/apt.log" 2>&1 && "${apt[@]}" >>"$DIR/log/apt.log" 2>&1; } \
    || { [[ -n $made_policy ]] && rm -f "$policy"; die "apt-get install ${missing[*]} failed; see $DIR/log/apt.log"; }
  [[ -n $made_policy ]] && rm -f "$policy"
  say "installed in $((SECONDS - t0)) s"
}

write_configs() {
  local node cpus mem
  node=$(hostname -s)
  read -r cpus mem < <(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*RealMemory=\([0-9]*\).*/\1 \2/p')
  [[ -n $cpus && -n $mem ]] || die "could not read this node's CPUs/memory from slurmd -C"
  cat >"$DIR/conf/slurm.conf" <<EOF
# written by slurm/cluster.sh: one node = this machine ($(slurmd -C | head -1))
ClusterName=$CLUSTER
SlurmctldHost=$node
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/run/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
# a one-node cluster for trying sweeps: try pending jobs every second (Slurm's defaults,
# 60 s and 30 s, leave a freed CPU idle for up to a minute before the next array task starts)
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$node
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$DIR/run/munge.socket
JobAcctGatherType=jobacct_gather/none
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/conf/slurmdbd.conf" <<EOF
# written by slurm/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$DIR/run/munge.socket
DbdHost=$node
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=root
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/conf/slurmdbd.conf"
}

start_munge() {
  pid_of munged >/dev/null && return
  [[ -s $DIR/conf/munge.key ]] || { dd if=/dev/urandom of="$DIR/conf/munge.key" bs=1024 count=1 status=none; chmod 400 "$DIR/conf/munge.key"; }
  munged --force --key-file="$DIR/conf/munge.key" --socket="$DIR/run/munge.socket" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/state/munged.seed"
  wait_for 10 munged munge -n -S "$DIR/run/munge.socket"
}

start_mariadb() {
  pid_of mariadbd >/dev/null && return
  if [[ ! -d $DIR/mysql/mysql ]]; then
    mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root --auth-root-authentication-method=normal \
      --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $DIR/log/mariadb-install.log"
  fi
  # own process group (setsid): `down` stops it by its pid file, nothing else
  setsid mariadbd --no-defaults --datadir="$DIR/mysql" --user=root --bind-address=127.0.0.1 --port="$DB_PORT" \
    --socket="$DIR/run/mysql.sock" --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadb.log" \
    --skip-name-resolve --innodb-buffer-pool-size=32M --performance-schema=OFF </dev/null >/dev/null 2>&1 &
  wait_for 60 mariadb mariadb --no-defaults -uroot -S "$DIR/run/mysql.sock" -e "select 1"
}

start_slurmdbd() {
  pid_of slurmdbd >/dev/null && return
  slurmdbd   # reads slurmdbd.conf beside $SLURM_CONF
  wait_for 60 slurmdbd sacctmgr -n list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -i add account "$CLUSTER" cluster="$CLUSTER" description=toyrepro organization=toyrepro >/dev/null
    sacctmgr -i add user root account="$CLUSTER" cluster="$CLUSTER" >/dev/null
  fi
}

node_idle() { [[ $(sinfo -h -N -o '%t' 2>/dev/null) == idle ]]; }

up() {
  [[ $(id -u) == 0 ]] || die "run as root (these daemons need it): sudo -E $0 up"
  mkdir -p "$DIR"/{conf,state,spool,log,run,mysql}
  local t0=$SECONDS
  install_packages
  local t1=$SECONDS
  write_configs
  start_munge
  start_mariadb
  start_slurmdbd
  pid_of slurmctld >/dev/null || slurmctld
  wait_for 60 slurmctld scontrol ping
  pid_of slurmd >/dev/null || slurmd
  wait_for 60 "an idle node (sinfo)" node_idle
  say "up: node $(hostname -s) idle in partition '$PARTITION' ($((SECONDS - t1)) s to start, $((t1 - t0)) s installing)"
  say "use it from a shell with: eval \"\$($0 env)\""
}

down() {
  if pid_of slurmctld >/dev/null; then
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      say "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
      scancel $jobs 2>/dev/null || true
      local t0=$SECONDS
      while [[ -n $(squeue -h -o %i 2>/dev/null) ]] && ((SECONDS - t0 < 60)); do sleep 0.5; done
    fi
  fi
  for d in "${DAEMONS[@]}"; do
    local pid
    pid=$(pid_of "$d") || { rm -f "$DIR/run/$d.pid"; continue; }
    kill "$pid"
    local t0=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS - t0 > 30)); then say "$d ($pid) ignored SIGTERM for 30 s: SIGKILL"; kill -9 "$pid" 2>/dev/null || true; fi
      sleep 0.2
    done
    rm -f "$DIR/run/$d.pid"
    say "stopped $d ($pid)"
  done
}

status() {
  local rc=0
  for d in "${DAEMONS[@]}"; do
    if pid=$(pid_of "$d"); then echo "$d: running (pid $pid)"; else echo "$d: not running"; rc=1; fi
  done
  if ((rc == 0)); then sinfo; squeue; fi
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *) echo "usage: $0 up|down|status|env   (state in $DIR)" >&2; exit 2 ;;
esac
