#!/bin/bash
# Supervised fine-tuning under Slurm: `make sft-$MODE` on one or many nodes (README "Clusters").
#   PROFILE=cpu sbatch slurm/sft.sh
#   MODE=full ACCEL=zero3 sbatch --nodes=2 --gpus-per-node=8 -p PARTITION slurm/sft.sh
# Variables as for make (PROFILE ACCEL RECIPE MODEL OUT ARGS RESUME NPROC, MODE=lora|qlora|full); slurm/common.sh.
#SBATCH --job-name=medqa-sft
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@300

source "${MEDQA_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
medqa_init sft
case "$MODE" in lora | qlora | full) ;; *) medqa_die "MODE must be lora, qlora or full; got MODE=$MODE" ;; esac
medqa_preflight
medqa_launch_setup
medqa_srun_make "sft-$MODE" $([ "$MEDQA_NODES" -gt 1 ] && echo "NPROC=$MEDQA_NPROC")
medqa_requeue_if_stopped
medqa_done "sft-$MODE into ${MEDQA_OUTPUT_DIR:-its output_dir}"
