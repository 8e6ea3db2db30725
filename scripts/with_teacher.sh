#!/usr/bin/env bash
# Run a PPO command with a teacher: BASE_URL (+ TEACHER_MODEL) when given; the API endpoint when a key is set;
# otherwise the offline judge (`medqa teacher serve`) on a free loopback port, started here, said loudly, and
# stopped when the command ends. The teacher options are appended to the command.
#   scripts/with_teacher.sh PYTHON CMD [ARGS...]
set -euo pipefail
PY=$1; shift
extra=()
[[ -n "${TEACHER_MODEL:-}" ]] && extra+=(--teacher_model "$TEACHER_MODEL")
if [[ -n "${BASE_URL:-}" ]]; then
  extra+=(--teacher_base_url "$BASE_URL")
elif [[ -z "${DEEPSEEK_API_KEY:-}${MEDQA_TEACHER_API_KEY:-}" ]]; then
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  bar=$(printf '!%.0s' {1..100})
  echo "$bar" >&2
  echo "!!! no DEEPSEEK_API_KEY / MEDQA_TEACHER_API_KEY and no BASE_URL: starting the OFFLINE heuristic judge" >&2
  echo "!!! (medqa teacher serve on 127.0.0.1:$port). Teacher scores are NOT from an LLM." >&2
  echo "$bar" >&2
  "$PY" -m medqa teacher serve --host 127.0.0.1 --port "$port" >/dev/null 2>&1 &
  judge=$!
  trap 'kill $judge 2>/dev/null; wait $judge 2>/dev/null || true' EXIT
  for _ in $(seq 300); do
    "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2>/dev/null && break
    kill -0 $judge 2>/dev/null || { echo "offline judge failed to start" >&2; exit 1; }
    sleep 0.2
  done
  extra=(--teacher_base_url "http://127.0.0.1:$port" --teacher_model medqa-offline-judge-v1 "${extra[@]}")
fi
"$@" "${extra[@]}"
