#!/usr/bin/env bash
# The long tests, which CI does not run (scripts/test.sh runs everything else):
#
#   scripts/test-long.sh [pytest args...]      e.g. scripts/test-long.sh tests/reliability -s
#
# Bootstraps .venv and .venv-pants like scripts/test.sh, then runs every test marked
# `slow`: fuzzing and 128-client load at full size, 50+ kill -9 trials during writes and
# exports, the whole registry-fault matrix (with Pants builds), hostile images at full
# size, installing the plugin wheel through [GLOBAL].plugins. docs/reliability.md says
# what each one holds and how long it takes (about 20-30 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/bootstrap.sh --pants
export NO_SCIE_WARNING=1
export OCI_CACHE_REQUIRE_PANTS=1

status=0
.venv/bin/python -m pytest -m slow "$@" || status=$?
if [[ $status -eq 5 ]]; then
  echo "test-long: pytest collected no tests (exit 5); that counts as a failure." >&2
fi
exit "$status"
