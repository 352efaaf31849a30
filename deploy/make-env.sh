#!/bin/sh
# Write .env for compose.yaml with freshly generated secrets (never overwrites one).
#   deploy/make-env.sh [path]        default: .env beside compose.yaml
set -eu
cd "$(dirname "$0")/.."
target="${1:-.env}"
if [ -e "$target" ]; then
  echo "make-env: $target exists; not overwriting it" >&2
  exit 1
fi
umask 077
python3 - "$target" <<'PY'
import base64
import os
import secrets
import sys

values = {
    "KASSA_JWT_SECRET": secrets.token_urlsafe(48),
    "KASSA_VAULT_KEYS": "k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "POSTGRES_PASSWORD": secrets.token_hex(24),
    "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(18),
}
with open(".env.example", encoding="utf-8") as template, open(sys.argv[1], "x", encoding="utf-8") as out:
    for line in template:
        name = line.split("=", 1)[0]
        out.write(f"{name}={values[name]}\n" if name in values and "=" in line else line)
PY
echo "make-env: wrote $target (mode 600); the Grafana admin password is in it"
