#!/usr/bin/env bash
# Prove the interop harness works against the real peers: pyre-gevent in
# zmesh-h1 <-> zyre.js in zmesh-h2 (see interop/selfcheck.py). Root only.
# Brings the namespaces up if needed (and leaves them up). Agent stderr goes to
# /tmp/selfcheck-<agent>.log.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$HERE/netns.sh" up
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" "$HERE/selfcheck.py" "$@"
