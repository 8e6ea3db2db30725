#!/bin/bash
# A vLLM rollout server under Slurm: `make vllm-serve` on one node, bound to the node's address, its URL written to
# outputs/vllm-server/url on the shared filesystem, where PPO jobs on other nodes read it (`ARGS="--rollout_engine
# vllm"`; or pass --vllm_server_base_url). The server runs until the job ends (scancel, or its time limit).
#   MODEL=Qwen/Qwen3-1.7B sbatch --gpus-per-node=1 -p PARTITION slurm/vllm.sh
#   SFT=outputs/sft-lora sbatch --nodes=2 --gpus-per-node=8 slurm/ppo.sh ARGS="--rollout_engine vllm"
# MODEL is the policy's base model (an adapter folder: its base). VLLM_PORT (default from the job id) and VLLM_ARGS
# as for make; VLLM_VENV is the vLLM environment (`make vllm-setup` once on a login node).
#SBATCH --job-name=medqa-vllm
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append

source "${MEDQA_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
medqa_init vllm
[ "${SLURM_JOB_NUM_NODES:-1}" = 1 ] || medqa_die "the vLLM server runs on one node; submit with --nodes=1"
[ -n "${MODEL:-}" ] || medqa_die "MODEL= is required: the base model (or an adapter folder) to serve"
VLLM_VENV=${VLLM_VENV:-.venv-vllm}
[ -x "$VLLM_VENV/bin/python" ] || medqa_die "no vLLM environment at VLLM_VENV=$VLLM_VENV: run \`make vllm-setup\` once on a login node"
VLLM_PORT=${VLLM_PORT:-$((24000 + SLURM_JOB_ID % 7000))}
medqa_log "vLLM server for $MODEL on $(hostname):$VLLM_PORT"
exec make --no-print-directory -o setup -o vllm-setup vllm-serve MODEL="$MODEL" VLLM_HOST=0.0.0.0 \
  VLLM_PORT="$VLLM_PORT" VLLM_VENV="$VLLM_VENV" VLLM_ARGS="${VLLM_ARGS:-}"
