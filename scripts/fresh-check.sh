#!/usr/bin/env bash
# What a new user gets: the README's two commands on a fresh clone with empty home-level caches.
#
#   scripts/fresh-check.sh               # scripts/demo.sh, then scripts/test.sh
#   scripts/fresh-check.sh --tests-only [pytest args...]
#   scripts/fresh-check.sh --demo-only
#
# Clones the committed HEAD (not the work tree) into a new temporary directory and runs the
# commands there with HOME set to another new, empty directory: no ~/.pex, ~/.cache/pants,
# ~/.cache/pip, ~/.docker left by earlier runs, so nothing passes only because this machine
# has been online before. pyenv's Pythons stay reachable (PYENV_ROOT is kept). The clone and
# the home are left in place for inspection; their paths are printed at the start.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

run_demo=1
run_tests=1
case "${1:-}" in
  --tests-only) run_demo=0; shift ;;
  --demo-only) run_tests=0; shift ;;
  -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

PYENV_ROOT="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
export PYENV_ROOT
scratch="$(mktemp -d /tmp/oci-cache-fresh.XXXXXX)"
clone="$scratch/clone"
fresh_home="$scratch/home"
mkdir "$fresh_home"
git clone --quiet "$repo" "$clone"
echo "fresh-check: clone of $(git -C "$clone" rev-parse --short HEAD) in $clone, HOME=$fresh_home" >&2

cd "$clone"
status=0
if [[ $run_demo -eq 1 ]]; then
  HOME="$fresh_home" scripts/demo.sh || status=$?
  echo "fresh-check: scripts/demo.sh exited $status" >&2
fi
if [[ $run_tests -eq 1 && $status -eq 0 ]]; then
  HOME="$fresh_home" scripts/test.sh "$@" || status=$?
  echo "fresh-check: scripts/test.sh exited $status" >&2
fi
exit "$status"
