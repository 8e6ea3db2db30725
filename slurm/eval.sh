#!/bin/bash
# Evaluation under Slurm: `make eval` (predict + score gold, red team, test and the exam sample) on one node.
#   MODEL=outputs/sft-lora-merged sbatch --gpus-per-node=1 slurm/eval.sh
#   MODEL=models/tiny-qwen3 LIMIT=4 sbatch slurm/eval.sh
# Variables as for make (MODEL ADAPTER LIMIT EVAL_SETS EVAL_ROOT EVAL_BATCH EVAL_MAX_NEW); slurm/common.sh.
#SBATCH --job-name=medqa-eval
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=04:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue

source "${MEDQA_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
medqa_init eval
[ "${SLURM_JOB_NUM_NODES:-1}" = 1 ] || medqa_die "eval runs on one node; submit with --nodes=1"
medqa_preflight
MEDQA_LAUNCH="" MEDQA_NODES=1
export MEDQA_LAUNCH MEDQA_NODES
medqa_srun_make eval
medqa_done "eval of ${MEDQA_MODEL} into ${EVAL_ROOT:-outputs/eval}"
