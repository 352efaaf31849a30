#!/usr/bin/env bash
# `make sandbox`: kassa's Stripe connector against localstripe, without containers.
# localstripe (deploy/localstripe/kassa_localstripe.py, the wrapper the tests use) listens on
# 127.0.0.1:$LOCALSTRIPE_PORT; kassa serves on $HOST:$PORT in development mode with
# KASSA_PROCESSOR=stripe pointed at it, on its own SQLite database. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${BIN:-.venv/bin}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
LOCALSTRIPE_PORT="${LOCALSTRIPE_PORT:-8420}"
SANDBOX_DATABASE_URL="${SANDBOX_DATABASE_URL:-sqlite+aiosqlite:///kassa-sandbox.db}"

kassa=""
"$BIN/python" deploy/localstripe/kassa_localstripe.py --host 127.0.0.1 --port "$LOCALSTRIPE_PORT" \
  >/dev/null &
localstripe=$!
stop() {
  # kassa first (it may be mid-request to localstripe), then localstripe.
  if [ -n "$kassa" ]; then kill -TERM "$kassa" 2>/dev/null || true; wait "$kassa" 2>/dev/null || true; fi
  kill -TERM "$localstripe" 2>/dev/null || true
  wait "$localstripe" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$LOCALSTRIPE_PORT") 2>/dev/null; then break; fi
  kill -0 "$localstripe" 2>/dev/null || { echo "sandbox: localstripe did not start" >&2; exit 1; }
  sleep 0.1
done
echo "sandbox: localstripe on http://127.0.0.1:$LOCALSTRIPE_PORT, kassa on http://$HOST:$PORT" >&2

# localstripe accepts any test-mode key; this one is not a secret.
KASSA_ENV=development \
KASSA_PROCESSOR=stripe \
KASSA_STRIPE_API_BASE="http://127.0.0.1:$LOCALSTRIPE_PORT" \
KASSA_STRIPE_API_KEY=sk_test_localstripe_sandbox \
KASSA_DATABASE_URL="$SANDBOX_DATABASE_URL" \
KASSA_WEBHOOK_ALLOW_PRIVATE=true \
  "$BIN/kassa" serve --host "$HOST" --port "$PORT" &
kassa=$!
wait "$kassa"
