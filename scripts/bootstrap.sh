#!/usr/bin/env bash
# Prepare a development checkout of pants-oci-cache. Idempotent and fast when done.
#
#   scripts/bootstrap.sh            # .venv (Python 3.9, `pip install -e '.[test]'` + dev tools)
#   scripts/bootstrap.sh --pants    # ... and .venv-pants (pantsbuild.pants 2.17.1) and the
#                                   #     plugin wheelhouse (.cache/pants-plugin-wheelhouse)
#   source scripts/bootstrap.sh [--pants]   # same, then the variables below are set
#
# Also installs the Debian packages the tests use (docker-registry skopeo zstd openssl)
# when run as root and one of them is missing.
#
# When sourced, these are set (and exported):
#   OCI_REPO_ROOT      the repository root
#   OCI_VENV           .venv            (python: $OCI_VENV/bin/python)
#   OCI_PANTS_VENV     .venv-pants      (pants:  $OCI_PANTS_VENV/bin/pants)
#   OCI_PANTS_VERSION  2.17.1
#   OCI_PLUGIN_WHEELHOUSE  .cache/pants-plugin-wheelhouse: wheels/ holds every dependency a
#                      `[GLOBAL].plugins = ["pants-oci-cache"]` resolve in Pants needs (resolved
#                      against Pants' own pins, plus the newest grpcio, which the resolve must
#                      reject, and the pip, setuptools and wheel pex bootstraps before it
#                      resolves), pex.pex the `[pex-cli]` tool Pants would download from GitHub;
#                      tests/integration/test_pants_plugin_install.py uses it offline
# Sourcing runs the steps in a child bash, so it changes neither the caller's working
# directory nor its shell options; its exit status is that of the bootstrap.

OCI_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OCI_VENV="$OCI_REPO_ROOT/.venv"
OCI_PANTS_VENV="$OCI_REPO_ROOT/.venv-pants"
OCI_PANTS_VERSION="2.17.1"
OCI_PLUGIN_WHEELHOUSE="$OCI_REPO_ROOT/.cache/pants-plugin-wheelhouse"
# The `pex` tool version Pants 2.17.1 runs (its `[pex-cli]` default).
OCI_PEX_VERSION="2.1.137"
# The pip pex bootstraps before any resolve: Pants 2.17.1's `[python] pip_version` default
# (23.1.2), with the setuptools and wheel pex 2.1.137 pins for that pip. Pex downloads them
# from the resolve's own indexes and find-links, so an offline resolve needs them there.
OCI_PEX_PIP_REQUIREMENTS="pip==23.1.2 setuptools==67.7.2 wheel==0.40.0"
OCI_DEBIAN_PACKAGES="docker-registry skopeo zstd openssl"
export OCI_REPO_ROOT OCI_VENV OCI_PANTS_VENV OCI_PANTS_VERSION OCI_PLUGIN_WHEELHOUSE
# The pip-installed `pants` script warns on every run that it is not the scie launcher.
export NO_SCIE_WARNING=1

bootstrap_log() {
  echo "bootstrap: $*" >&2
}

# Prints the newest Python 3.9 interpreter: pyenv's first, then python3.9 on PATH.
bootstrap_find_python39() (
  set -euo pipefail
  local pyenv_root candidate installed
  # pyenv need not be on PATH (e.g. in CI shells): its default root works too.
  pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
  installed=("$pyenv_root"/versions/3.9.*/bin/python3.9)
  candidate="$(printf '%s\n' "${installed[@]}" | sort -V | tail -n 1)"
  if [[ -x "$candidate" ]]; then
    echo "$candidate"
    return 0
  fi
  if candidate="$(command -v python3.9)" && "$candidate" -c 'import sys' >/dev/null 2>&1; then
    echo "$candidate"
    return 0
  fi
  echo "bootstrap: error: Python 3.9 not found (looked in \$(pyenv root)/versions/3.9.*/bin and for python3.9 on PATH)." >&2
  echo "bootstrap: install it, e.g. 'pyenv install 3.9', and re-run." >&2
  return 1
)

# Installs the Debian packages the tests need, when root and something is missing.
bootstrap_debian_packages() (
  set -euo pipefail
  command -v dpkg-query >/dev/null 2>&1 || return 0
  local missing=() package
  for package in $OCI_DEBIAN_PACKAGES; do
    if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)" != "install ok installed" ]]; then
      missing+=("$package")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ "$(id -u)" != "0" ]]; then
    bootstrap_log "warning: missing Debian packages (registry tests need them): ${missing[*]}"
    bootstrap_log "warning: run 'sudo apt-get install ${missing[*]}'"
    return 0
  fi
  bootstrap_log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
)

# Creates VENV_DIR with PYTHON unless it exists and runs that same interpreter.
bootstrap_make_venv() (
  set -euo pipefail
  local venv_dir="$1" python="$2"
  local wanted
  wanted="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [[ -x "$venv_dir/bin/python" ]] \
    && [[ "$("$venv_dir/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)" == "$wanted" ]]; then
    return 0
  fi
  bootstrap_log "creating $venv_dir with $python"
  rm -rf "$venv_dir"
  "$python" -m venv "$venv_dir"
  "$venv_dir/bin/python" -m pip install --quiet --upgrade pip
)

# Prints a hash of the given strings and files (missing files hash as their name).
bootstrap_fingerprint() (
  set -euo pipefail
  local item
  for item in "$@"; do
    if [[ -f "$item" ]]; then
      echo "$item"
      cat "$item"
    else
      echo "$item"
    fi
  done | sha256sum | cut -d' ' -f1
)

# .venv: Python 3.9, the project in editable mode with its test extra, and the dev tools.
bootstrap_dev_venv() (
  set -euo pipefail
  cd "$OCI_REPO_ROOT"
  local python stamp fingerprint
  python="$(bootstrap_find_python39)"
  fingerprint="$(bootstrap_fingerprint "$python" pyproject.toml requirements-dev.txt)"
  stamp="$OCI_VENV/.bootstrap-stamp"
  if [[ -x "$OCI_VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]]; then
    return 0
  fi
  bootstrap_make_venv "$OCI_VENV" "$python"
  bootstrap_log "installing pants-oci-cache (editable) and dev requirements into .venv"
  "$OCI_VENV/bin/python" -m pip install --quiet -e '.[test]' -r requirements-dev.txt
  echo "$fingerprint" >"$stamp"
)

# .venv-pants: Python 3.9 with pantsbuild.pants (a cp39-only wheel).
bootstrap_pants_venv() (
  set -euo pipefail
  cd "$OCI_REPO_ROOT"
  local python stamp fingerprint
  python="$(bootstrap_find_python39)"
  fingerprint="$(bootstrap_fingerprint "$python" "pantsbuild.pants==$OCI_PANTS_VERSION")"
  stamp="$OCI_PANTS_VENV/.bootstrap-stamp"
  if [[ -x "$OCI_PANTS_VENV/bin/pants" && -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]]; then
    return 0
  fi
  bootstrap_make_venv "$OCI_PANTS_VENV" "$python"
  bootstrap_log "installing pantsbuild.pants==$OCI_PANTS_VERSION into .venv-pants"
  "$OCI_PANTS_VENV/bin/python" -m pip install --quiet "pantsbuild.pants==$OCI_PANTS_VERSION"
  echo "$fingerprint" >"$stamp"
)

# .cache/pants-plugin-wheelhouse: what a `[GLOBAL].plugins` install of pants-oci-cache needs,
# for tests that run Pants without the network. Needs .venv-pants (and the network once).
bootstrap_plugin_wheelhouse() (
  set -euo pipefail
  cd "$OCI_REPO_ROOT"
  local stamp fingerprint scratch pants_pip="$OCI_PANTS_VENV/bin/pip"
  fingerprint="$(bootstrap_fingerprint pyproject.toml "pex==$OCI_PEX_VERSION" \
    "$OCI_PEX_PIP_REQUIREMENTS" "$OCI_PANTS_VENV/.bootstrap-stamp")"
  stamp="$OCI_PLUGIN_WHEELHOUSE/.bootstrap-stamp"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]]; then
    return 0
  fi
  bootstrap_log "downloading the pants-oci-cache plugin's dependencies into $OCI_PLUGIN_WHEELHOUSE"
  scratch="$OCI_PLUGIN_WHEELHOUSE.tmp"
  rm -rf "$scratch"
  mkdir -p "$scratch/wheels" "$scratch/pex-wheel"
  # Pants resolves plugins with everything installed in its own venv as constraints.
  "$pants_pip" freeze --all | grep -v '^pantsbuild\.pants==' >"$scratch/pants-constraints.txt"
  # This project's dependencies (pip reads them from pyproject.toml) under Pants' pins.
  "$pants_pip" download --quiet --only-binary=:all: --dest "$scratch/wheels" \
    --constraint "$scratch/pants-constraints.txt" "$OCI_REPO_ROOT"
  # The newest grpcio and typing-extensions too, as on PyPI: that grpcio needs a
  # typing-extensions that Pants' pin (4.3.0) excludes, so the resolve has to pass it over.
  "$pants_pip" download --quiet --only-binary=:all: --no-deps --dest "$scratch/wheels" \
    grpcio typing-extensions
  # The pip pex sets up for itself before it resolves anything (word-split on purpose).
  # shellcheck disable=SC2086
  "$pants_pip" download --quiet --only-binary=:all: --no-deps --dest "$scratch/wheels" \
    $OCI_PEX_PIP_REQUIREMENTS
  "$pants_pip" download --quiet --only-binary=:all: --no-deps --dest "$scratch/pex-wheel" \
    "pex==$OCI_PEX_VERSION"
  # The pex PEX as released (`pex pex==V -c pex -o pex.pex`), built offline from that wheel.
  PIP_CONFIG_FILE=/dev/null "$OCI_PANTS_VENV/bin/pex" --no-pypi --find-links "$scratch/pex-wheel" \
    "pex==$OCI_PEX_VERSION" --console-script pex --output-file "$scratch/pex.pex"
  rm -rf "$OCI_PLUGIN_WHEELHOUSE"
  mv "$scratch" "$OCI_PLUGIN_WHEELHOUSE"
  echo "$fingerprint" >"$stamp"
)

bootstrap_main() {
  local with_pants=0 arg
  for arg in "$@"; do
    case "$arg" in
      --pants) with_pants=1 ;;
      -h | --help)
        sed -n '2,24p' "$OCI_REPO_ROOT/scripts/bootstrap.sh" | sed 's/^# \{0,1\}//'
        return 0
        ;;
      *)
        echo "bootstrap: unknown argument: $arg (accepted: --pants)" >&2
        return 2
        ;;
    esac
  done
  bootstrap_debian_packages
  bootstrap_dev_venv
  if [[ $with_pants -eq 1 ]]; then
    bootstrap_pants_venv
    bootstrap_plugin_wheelhouse
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  bootstrap_main "$@"
else
  # Sourced: do the work in a child process, whose `set -e` holds even when the caller
  # sources this file inside an `if` or `||` (where bash would silently ignore it).
  bash "$OCI_REPO_ROOT/scripts/bootstrap.sh" "$@"
fi
