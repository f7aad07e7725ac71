#!/usr/bin/env bash
# The one test command (README "Development"; .ci/run calls exactly this).
# It does every set-up step a fresh machine needs, then runs pytest with any extra arguments:
#   1. Debian packages: prometheus-alertmanager (real Alertmanager, amtool), prometheus
#      (promtool checks and unit-tests the shipped alert rules), openssl (test PKI),
#      systemd (systemd-analyze verifies the shipped unit)
#   2. a virtualenv in .venv with deckhand and its dev extra
#   3. the Go-built tools (kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok,
#      sops, age) in .cache/bin, rebuilt only when a pinned version changes
#   4. pytest, in DECKHAND_TEST_WORKERS processes (default 4; pytest-xdist, one test file per
#      worker at a time, each worker with a control plane of its own: the suite mostly waits on
#      controllers and timeouts, so 4 workers fit on 2 cores; 1 runs it in one process)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
command -v promtool >/dev/null || need_apt+=(prometheus)  # promtool: the shipped alert rules
command -v openssl >/dev/null || need_apt+=(openssl)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "Go 1.26+ is required to build the test cluster (go not on PATH)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "[setup] python3 -m venv .venv" >&2
  python3 -m venv .venv
fi
stamp=.venv/.deckhand-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] pip install -e .[dev]" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

.venv/bin/python -m tests.cluster build
workers=${DECKHAND_TEST_WORKERS:-4}
if [ "$workers" -gt 1 ]; then
  exec .venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
fi
exec .venv/bin/python -m pytest "$@"
