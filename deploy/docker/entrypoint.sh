#!/bin/sh
# The image's entry point: `serve` (the default) runs the API on 0.0.0.0:KASSA_PORT (8000
# unless set; on a host network 8000 may be taken) with KASSA_WORKERS processes; any other
# argument list is handed to `kassa` as it is (`worker`, `migrate`, `reconcile`,
# `ledger verify`, `--help`).
set -eu

# KASSA_WORKERS and KASSA_PORT are read here, not by kassa: kassa refuses KASSA_* variables
# it does not know, so they are taken out of the environment before kassa starts.
workers="${KASSA_WORKERS:-2}"
port="${KASSA_PORT:-8000}"
unset KASSA_WORKERS KASSA_PORT

case "$workers" in
  '' | *[!0-9]*)
    echo "kassa-entrypoint: KASSA_WORKERS must be a whole number, not '$workers'" >&2
    exit 2
    ;;
esac
case "$port" in
  '' | *[!0-9]*)
    echo "kassa-entrypoint: KASSA_PORT must be a port number, not '$port'" >&2
    exit 2
    ;;
esac

if [ "$#" -eq 0 ] || [ "$1" = "serve" ]; then
  [ "$#" -gt 0 ] && shift
  exec kassa serve --host 0.0.0.0 --port "$port" --workers "$workers" "$@"
fi
exec kassa "$@"
