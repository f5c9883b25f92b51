#!/usr/bin/env bash
# Run podlab's whole test suite (unit + integration) as root, installing what it needs first.
#   sudo ./scripts/test.sh [pytest args...]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PODLAB_VENV:-/opt/podlab/venv}"
"$REPO/scripts/setup.sh" --no-demo
cd "$REPO"
# The architecture first: every package imports only from the layers below it (contract in pyproject.toml).
"$VENV/bin/lint-imports" --no-cache
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests (exit 5): that is a failure of the suite itself" >&2
  exit 1
fi
exit "$rc"
