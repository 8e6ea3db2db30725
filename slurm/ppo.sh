#!/bin/bash
# PPO under Slurm: `make ppo` (scripts/ppo.py, recipes/ppo/[PROFILE/]MODE.yaml) on one or many nodes, from the SFT
# output SFT=. The teacher is either
#   - an API endpoint: BASE_URL= or MEDQA_TEACHER_BASE_URL= (default the client's, DeepSeek) with the key in
#     MEDQA_TEACHER_API_KEY or DEEPSEEK_API_KEY in the environment; key and URL reach the job through sbatch's
#     environment, never its log or a command line (a URL's user:password stays out of `ps`);
#   - the offline judge (no key, or TEACHER=offline): started as a separate job step on the first node, its address
#     handed to the training step as BASE_URL (make ppo passes it on as the environment variable
#     MEDQA_TEACHER_BASE_URL).
#   SFT=outputs/sft-lora sbatch --nodes=2 --gpus-per-node=8 -p PARTITION slurm/ppo.sh
# Variables as for make (PROFILE ACCEL RECIPE OUT ARGS RESUME NPROC MODE); slurm/common.sh.
#SBATCH --job-name=medqa-ppo
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@300

source "${MEDQA_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
medqa_init ppo
case "$MODE" in lora | qlora | full) ;; *) medqa_die "MODE must be lora, qlora or full; got MODE=$MODE" ;; esac
medqa_preflight
medqa_launch_setup

TEACHER=${TEACHER:-auto}
if [ "$TEACHER" = auto ]; then
  if [ -n "${BASE_URL:-}${MEDQA_TEACHER_BASE_URL:-}${MEDQA_TEACHER_API_KEY:-}${DEEPSEEK_API_KEY:-}" ]; then TEACHER=api; else TEACHER=offline; fi
fi
case "$TEACHER" in
  api)
    [ -n "${MEDQA_TEACHER_API_KEY:-}${DEEPSEEK_API_KEY:-}" ] ||
      medqa_log "warning: no MEDQA_TEACHER_API_KEY / DEEPSEEK_API_KEY in the environment; the endpoint must not need one"
    medqa_log "teacher: API endpoint $(if [ -n "${BASE_URL:-}${MEDQA_TEACHER_BASE_URL:-}" ]; then medqa_public_url "${BASE_URL:-$MEDQA_TEACHER_BASE_URL}"; else echo "(default of the teacher client)"; fi)" ;;
  offline)
    # The judge never needs a key: keep any out of the job steps.
    unset MEDQA_TEACHER_API_KEY DEEPSEEK_API_KEY MEDQA_TEACHER_BASE_URL
    JUDGE_PORT=${JUDGE_PORT:-$((23000 + SLURM_JOB_ID % 7000))}
    JUDGE_HOST=$(if [ "$MEDQA_NODES" -gt 1 ]; then medqa_head_addr; else echo 127.0.0.1; fi)
    JUDGE_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    srun --overlap --nodes=1 --ntasks=1 --nodelist="$JUDGE_NODE" \
      make --no-print-directory -o setup teacher-serve TEACHER_HOST=0.0.0.0 PORT="$JUDGE_PORT" &
    JUDGE_PID=$!
    trap 'kill $JUDGE_PID 2>/dev/null || true' EXIT
    medqa_wait_http "http://$JUDGE_HOST:$JUDGE_PORT/health" "$JUDGE_PID" 300 ||
      medqa_die "the offline judge step did not answer on http://$JUDGE_HOST:$JUDGE_PORT/health (see above)"
    # make ppo hands BASE_URL and TEACHER_MODEL to the training processes (and starts no judge of its own).
    export BASE_URL="http://$JUDGE_HOST:$JUDGE_PORT/v1" TEACHER_MODEL=medqa-offline-judge-v1
    medqa_log "teacher: offline judge (job step on $JUDGE_NODE) ready at http://$JUDGE_HOST:$JUDGE_PORT/v1" ;;
  *) medqa_die "TEACHER must be auto, api or offline; got TEACHER=$TEACHER" ;;
esac

MEDQA_SRUN_ARGS=--overlap medqa_srun_make "$(if [ "$MODE" = full ]; then echo ppo-full; else echo ppo; fi)" MODE="$MODE" \
  $([ "$MEDQA_NODES" -gt 1 ] && echo "NPROC=$MEDQA_NPROC")
medqa_requeue_if_stopped
medqa_done "ppo into ${MEDQA_OUTPUT_DIR:-its output_dir}"
