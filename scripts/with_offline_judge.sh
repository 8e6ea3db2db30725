#!/usr/bin/env bash
# Run a trainer command against the teacher. With an API key (DEEPSEEK_API_KEY / MEDQA_TEACHER_API_KEY) or
# BASE_URL set, the command runs as given (the trainer uses the configured endpoint). Otherwise the OFFLINE judge
# (medqa's heuristic OpenAI-compatible server) is started on a free loopback port for the command's lifetime, said
# loudly, and the command gets `--teacher_base_url URL --teacher_model medqa-offline-judge-v1` appended.
set -euo pipefail
PY=${PY:-.venv/bin/python}
if [[ -n "${DEEPSEEK_API_KEY:-}${MEDQA_TEACHER_API_KEY:-}${BASE_URL:-}" ]]; then
  exec "$@"
fi
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t medqa-offline-judge.XXXXXX)
"$PY" -m medqa teacher serve --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
judge=$!
trap 'kill "$judge" 2>/dev/null || true; wait "$judge" 2>/dev/null || true; rm -f "$log"; echo ">> offline judge stopped" >&2' EXIT
for _ in $(seq 1 150); do
  if "$PY" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2>/dev/null; then break; fi
  kill -0 "$judge" 2>/dev/null || { cat "$log" >&2; echo "the offline judge did not start" >&2; exit 1; }
  sleep 0.2
done
model=$("$PY" -c 'from medqa.teacher.judge import OFFLINE_MODEL; print(OFFLINE_MODEL)')
bar=$(printf '!%.0s' $(seq 1 100))
{ echo "$bar"; echo "NO TEACHER API KEY: rewards use the OFFLINE heuristic judge ($model) at http://127.0.0.1:$port"
  echo "(not an LLM; set DEEPSEEK_API_KEY or MEDQA_TEACHER_API_KEY, or BASE_URL=, for a real teacher)"; echo "$bar"; } >&2
"$@" --teacher_base_url "http://127.0.0.1:$port" --teacher_model "$model"
