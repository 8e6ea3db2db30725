# Shared by the batch scripts slurm/sft.sh, slurm/ppo.sh, slurm/eval.sh and slurm/vllm.sh (sourced, not run).
#
# A job runs the same make target as a workstation (`make sft-lora …`), with the multi-node flags of
# `accelerate launch` added through the Makefile's LAUNCH variable, so the launch line is defined once (Makefile).
#
# Set before `sbatch` (sbatch passes the environment to the job; README "Clusters"):
#   MEDQA_ENV   shell lines that make the software environment usable on a compute node, run in the job before
#               anything else, e.g. "module load cuda/12.4" or "source ~/miniforge3/bin/activate medqa"; default: none
#   VENV        the Python environment make uses (default .venv of the checkout; $CONDA_PREFIX for a conda env)
#   PROFILE ACCEL RECIPE MODEL OUT ARGS RESUME   as for make; MODE=lora|qlora|full
#   NPROC       processes per node (default: the node's GPUs, else the accelerate config's num_processes)
#   MEDQA_PORT  rendezvous port (default: 16000 + job id % 7000, so two jobs on one node never collide)
# Partition, account, GPUs, CPUs, memory, time: sbatch flags (`sbatch -p gpu --gpus-per-node=8 …`).

set -euo pipefail

medqa_log() { echo "medqa-slurm: $*"; }
medqa_die() { echo "medqa-slurm: error: $*" >&2; exit 2; }

# The variables a job reports in its log. Never the environment as a whole: API keys live there.
MEDQA_SHOWN_VARS=(PROFILE MODE ACCEL RECIPE MODEL SFT ADAPTER OUT ARGS NPROC RESUME LIMIT VENV VLLM_ARGS)

# medqa_init STAGE: go to the checkout, activate the environment, report the job.
medqa_init() {
  MEDQA_STAGE=$1
  [ -n "${SLURM_JOB_ID:-}" ] || medqa_die "slurm/$1.sh is a batch script: submit it with sbatch (or use make on a workstation)"
  cd "${MEDQA_ROOT:-$SLURM_SUBMIT_DIR}"
  [ -f Makefile ] && [ -f slurm/common.sh ] ||
    medqa_die "$PWD is not the medqa checkout: submit from its root (sbatch slurm/$1.sh) or set MEDQA_ROOT"
  if [ -n "${MEDQA_ENV:-}" ]; then set +u; eval "$MEDQA_ENV"; set -u; fi  # module/conda scripts use unset variables
  VENV=${VENV:-.venv}
  export VENV
  [ -x "$VENV/bin/accelerate" ] ||
    medqa_die "no Python environment at VENV=$VENV: run \`make setup\` once on a login node, or set VENV= / MEDQA_ENV="
  MODE=${MODE:-lora}
  medqa_log "job $SLURM_JOB_ID ($SLURM_JOB_NAME), attempt $((${SLURM_RESTART_COUNT:-0} + 1)), ${SLURM_JOB_NUM_NODES:-1} node(s): ${SLURM_JOB_NODELIST:-?}"
  local v
  for v in "${MEDQA_SHOWN_VARS[@]}"; do
    if [ -n "${!v:-}" ]; then medqa_log "  $v=${!v}"; fi
  done
  # --signal=B:USR1@… reaches this shell shortly before the time limit. Training checkpoints and stops when its
  # stop file appears (medqa/runs/preemption.py); then the job requeues itself and the next attempt resumes.
  mkdir -p logs
  export MEDQA_STOP_FILE=$PWD/logs/.stop-$SLURM_JOB_ID
  rm -f "$MEDQA_STOP_FILE"
  MEDQA_STOP_REQUESTED=""
  trap medqa_on_time_limit USR1
}

medqa_on_time_limit() {
  medqa_log "time limit close (USR1): asking training to checkpoint and stop"
  MEDQA_STOP_REQUESTED=1
  touch "$MEDQA_STOP_FILE"
}

# After the training step: a job that stopped on request requeues itself (the stop file goes with this attempt).
medqa_requeue_if_stopped() {
  [ -n "$MEDQA_STOP_REQUESTED" ] || return 0
  rm -f "$MEDQA_STOP_FILE"
  medqa_log "checkpointed before the time limit: requeueing job $SLURM_JOB_ID; the next attempt resumes"
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
}

# medqa_preflight [make variables]: `make slurm-preflight` checks the recipe, launcher, model and data before anything
# is launched, and sets MEDQA_RECIPE, MEDQA_ACCEL, MEDQA_ACCEL_PROCESSES, MEDQA_MODEL, MEDQA_OUTPUT_DIR.
medqa_preflight() {
  local resolved
  resolved=$(make --no-print-directory -s slurm-preflight STAGE="$MEDQA_STAGE" MODE="$MODE" "$@") ||
    medqa_die "pre-launch checks failed (above); nothing was launched"
  eval "$resolved"
  medqa_log "checked: ${MEDQA_RECIPE:+recipe $MEDQA_RECIPE, }${MEDQA_ACCEL:+launcher $MEDQA_ACCEL, }model ${MEDQA_MODEL:-?}"
}

# The first node's address as Slurm knows it (NodeAddr): node names need not resolve, addresses do.
medqa_head_addr() {
  local head
  head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  scontrol show node "$head" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2
}

# medqa_launch_setup: MEDQA_LAUNCH (extra `accelerate launch` flags) and MEDQA_NPROC (all processes of the job).
medqa_launch_setup() {
  local nodes=${SLURM_JOB_NUM_NODES:-1}
  local per_node=${NPROC:-${SLURM_GPUS_ON_NODE:-${MEDQA_ACCEL_PROCESSES:-1}}}
  MEDQA_PORT=${MEDQA_PORT:-$((16000 + SLURM_JOB_ID % 7000))}
  MEDQA_NPROC=$((nodes * per_node))
  if [ "$nodes" -gt 1 ]; then
    MEDQA_HEAD_ADDR=$(medqa_head_addr)
    [ -n "$MEDQA_HEAD_ADDR" ] || medqa_die "no NodeAddr for the first node of $SLURM_JOB_NODELIST (scontrol show node)"
    # --machine_rank is added inside each task (medqa_srun_make), where SLURM_NODEID is that node's.
    MEDQA_LAUNCH="--num_machines $nodes --main_process_ip $MEDQA_HEAD_ADDR --main_process_port $MEDQA_PORT"
    MEDQA_LAUNCH+=" --rdzv_backend c10d --deepspeed_multinode_launcher standard"
    export MEDQA_HEAD_ADDR
    medqa_log "$nodes nodes x $per_node processes, rendezvous c10d at $MEDQA_HEAD_ADDR:$MEDQA_PORT"
  else
    MEDQA_LAUNCH="--main_process_port $MEDQA_PORT"
    medqa_log "1 node x $per_node processes, port $MEDQA_PORT"
  fi
  export MEDQA_LAUNCH MEDQA_NODES=$nodes
}

# medqa_srun_make TARGET [make variables]: one task per node runs `make TARGET` with the job's launch flags. The
# job's inputs were checked, so make builds nothing (-o: setup, tiny-model and data count as up to date).
# srun runs in the background so the USR1 trap fires while it runs.
medqa_srun_make() {
  local rc=0
  medqa_log "launching on $MEDQA_NODES node(s): make $*"
  srun --ntasks-per-node=1 --kill-on-bad-exit=1 ${MEDQA_SRUN_ARGS:-} bash -c '
    launch=$MEDQA_LAUNCH
    # The first node hosts the rendezvous store (is_host): explicit, so nodes sharing one address cannot race for it.
    if [ "$MEDQA_NODES" -gt 1 ]; then
      launch+=" --machine_rank $SLURM_NODEID --rdzv_conf is_host=$([ "$SLURM_NODEID" = 0 ] && echo 1 || echo 0)"
    fi
    exec make --no-print-directory -o setup -o tiny-model -o data "$@" LAUNCH="$launch"' medqa-task "$@" &
  local pid=$!
  while :; do
    rc=0
    wait "$pid" || rc=$?
    kill -0 "$pid" 2>/dev/null || break  # still there: a trap (USR1) interrupted wait, not the step's end
  done
  return "$rc"
}

# medqa_wait_http URL PID SECONDS: wait until URL answers, while the process PID (a job step's srun) lives.
medqa_wait_http() {
  local url=$1 pid=$2 deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" \
      2>/dev/null && return 0
    sleep 1
  done
  return 1
}

# medqa_public_url URL: URL as a log may show it (medqa.teacher.protocol.public_url: no user:password, query, fragment).
# The URL reaches python through its environment, not its arguments, which `ps` shows.
medqa_public_url() {
  MEDQA_URL_TO_SHOW="$1" "$VENV/bin/python" -c \
    'import os; from medqa.teacher.protocol import public_url; print(public_url(os.environ["MEDQA_URL_TO_SHOW"]))'
}

medqa_done() {
  medqa_log "job $SLURM_JOB_ID finished: $*"
}
