#!/usr/bin/env bash
# The test suite, as CI runs it (.ci/run):
#
#   scripts/test.sh [pytest args...]      e.g. scripts/test.sh -k pants -x
#
# Bootstraps .venv and .venv-pants, checks that the generated protobuf code matches
# protos/, then runs every test not marked `slow`. A missing Pants is a failure here
# (OCI_CACHE_REQUIRE_PANTS=1), and so is "no tests collected".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/bootstrap.sh --pants
export NO_SCIE_WARNING=1
export OCI_CACHE_REQUIRE_PANTS=1

if ! .venv/bin/python scripts/generate_protos.py --check; then
  echo "test: the generated code in src/python/oci_cache/_proto is stale;" \
    "run '.venv/bin/python scripts/generate_protos.py' and commit the result." >&2
  exit 1
fi

status=0
.venv/bin/python -m pytest -m "not slow" "$@" || status=$?
if [[ $status -eq 5 ]]; then
  echo "test: pytest collected no tests (exit 5); that counts as a failure." >&2
fi
exit "$status"
