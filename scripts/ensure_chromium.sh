#!/usr/bin/env bash
# Make Debian's headless Chromium available for the browser test (tests/eval/test_serve_browser.py).
# Playwright's own browser download is blocked on the test machines, so the test drives /usr/bin/chromium.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo ">> installing Debian chromium for the browser test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  exit 0
fi
echo "note: chromium not found and cannot be installed here (needs root + apt); the browser test will be skipped." >&2
if [ "${CI:-}" = "true" ]; then
  echo "error: CI must run the browser test; install Debian's chromium package." >&2
  exit 1
fi
