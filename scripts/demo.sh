#!/usr/bin/env bash
# The main job: Pants 2.17.1 builds the bundled example repository (examples/basic) twice
# through the pants_oci_cache plugin, the way a user sets it up — the backend and an
# [oci-cache] section in pants.toml, no address and no server started by hand:
#
#   1. a cold build: the plugin starts the oci-cache daemon, every process runs locally
#      and is written to the daemon; at the end of the run the plugin has the daemon
#      export its cache image. With no cache_from / cache_to configured (as here), that
#      is the embedded default: an OCI image layout in the daemon's state directory
#      (.cache/demo/oci-cache/<repo>-<key>/cache-image), imported again at every start;
#   2. the daemon is stopped and its local store deleted, and the build runs again as a
#      fresh machine would (an empty Pants local store, --no-local-cache): the plugin
#      starts a new daemon, which imports the cache image, and every process is served
#      from it, with byte-identical outputs;
#   3. a developer's edit: a word added to data/words.txt and gen:tiny's command changed;
#      build 3 misses for the processes that depend on them, and `oci-cache explain` (the
#      table, then `--json`) says for each miss which process it was, its previous version
#      in the cache image (the embedded default is exported in mode=max, which keeps every
#      Action and Command) and what differs.
#
# After each build the plugin prints its summary line (`oci-cache: H hits, M misses, ...;
# exported N entries ... to type=local,dest=...`, or, when the run added nothing,
# `type=local,dest=... is up to date (N entries, nothing new)`).
#
#   scripts/demo.sh
#
# Everything it writes is under .cache/demo/ (removed at the start of each demo); the
# daemon is stopped at the end (`oci-cache stop`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$PWD"

scripts/bootstrap.sh --pants
export NO_SCIE_WARNING=1

DEMO_DIR="$REPO_ROOT/.cache/demo"
BUILDROOT="$DEMO_DIR/repo"
STATE_DIR="$DEMO_DIR/oci-cache"
PANTS="$REPO_ROOT/.venv-pants/bin/pants"
GOALS=(export-codegen test ::)

if [[ -d "$STATE_DIR" ]]; then # a daemon left by an interrupted demo
  .venv/bin/oci-cache stop --state-dir "$STATE_DIR" --no-export >/dev/null 2>&1 || true
fi
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
cp -R examples/basic "$BUILDROOT"
# Pants' default caches (~/.cache/pants) follow XDG_CACHE_HOME: keep them in the demo too.
export XDG_CACHE_HOME="$DEMO_DIR/xdg-cache"

# --- the plugin's configuration: what a user adds to pants.toml ------------------------
# (A second config file, so that the example's own pants.toml stays as it is.) The plugin
# is installed in-repo: `pythonpath` makes `pants_oci_cache` importable by Pants; the
# daemon runs on .venv's interpreter, which has the daemon's dependencies.
cat >"$BUILDROOT/oci-cache.toml" <<TOML
[GLOBAL]
pythonpath = ["$REPO_ROOT/src/python"]
backend_packages.add = ["pants_oci_cache"]
remote_cache_read = true
remote_cache_write = true

[oci-cache]
state_dir = "$STATE_DIR"
python = "$REPO_ROOT/.venv/bin/python"
TOML

stop_daemon() {
  .venv/bin/oci-cache stop --state-dir "$STATE_DIR" >"$DEMO_DIR/stop.log" 2>&1 || true
}
trap stop_daemon EXIT
trap 'exit 130' INT TERM # so that the EXIT trap stops the daemon

# --- Pants ----------------------------------------------------------------------------

now() { date +%s.%N; }
seconds_since() { minus "$(now)" "$1"; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }

# pants_in_buildroot NAME ARGS...: one --no-pantsd run whose own directories are all
# under .cache/demo/NAME; output in .cache/demo/NAME.log, wall time in $ELAPSED.
pants_in_buildroot() {
  local name="$1"
  shift
  local run_dir="$DEMO_DIR/$name" start status=0
  mkdir -p "$run_dir/sandboxes"
  start="$(now)"
  (cd "$BUILDROOT" && "$PANTS" --no-pantsd --no-pantsrc --no-watch-filesystem \
    --pants-config-files="+['$BUILDROOT/oci-cache.toml']" \
    --pants-workdir="$run_dir/workdir" \
    --pants-subprocessdir="$run_dir/pids" \
    --local-store-dir="$run_dir/local-store" \
    --named-caches-dir="$run_dir/named-caches" \
    --local-execution-root-dir="$run_dir/sandboxes" \
    "$@") >"$DEMO_DIR/$name.log" 2>&1 || status=$?
  ELAPSED="$(seconds_since "$start")"
  if [[ $status -ne 0 ]]; then
    echo "demo: pants ($name) failed with exit code $status; last lines of $DEMO_DIR/$name.log:" >&2
    tail -n 40 "$DEMO_DIR/$name.log" >&2
    exit 1
  fi
}

# build NAME ARGS...: the example build, outputs in dist-NAME.
build() {
  local name="$1"
  shift
  pants_in_buildroot "$name" \
    --pants-distdir="$BUILDROOT/dist-$name" \
    --stats-log --ignore-warnings="['Please run with \`--plugins=hdrhistogram\`']" \
    "$@" "${GOALS[@]}"
}

# counter NAME COUNTER: a value from the --stats-log block of that run's log.
counter() {
  awk -v key="$2:" '/Counters:/ { on = 1; next } on && $1 == key { value = $2 } END { print value + 0 }' \
    "$DEMO_DIR/$1.log"
}

# plugin_summary NAME: the plugin's end-of-run line in that run's log.
plugin_summary() {
  grep -o 'oci-cache: [0-9]* hits\{0,1\},.*' "$DEMO_DIR/$1.log" | tail -n 1 || true
}

# warnings NAME: the plugin's warnings in that run's log, if any.
plugin_warnings() {
  grep '\[oci-cache\]' "$DEMO_DIR/$1.log" || true
}

# --- the demo -------------------------------------------------------------------------

echo "demo: measuring Pants start-up (pants --version) ..."
pants_in_buildroot startup --version
startup_seconds="$ELAPSED"

echo "demo: build 1 (cold: the plugin starts the daemon) ..."
build cold
cold_seconds="$ELAPSED"
echo "      $(plugin_summary cold)"

echo "demo: stopping the daemon and deleting its local store: only the cache image is left ..."
stop_daemon
rm -rf "$STATE_DIR"/*/store
image_dir="$(ls -d "$STATE_DIR"/*/cache-image 2>/dev/null | head -n 1)"

echo "demo: build 2 (fresh local store, --no-local-cache; a new daemon imports the cache image) ..."
build warm --no-local-cache
warm_seconds="$ELAPSED"
echo "      $(plugin_summary warm)"

.venv/bin/oci-cache status --state-dir "$STATE_DIR" >"$DEMO_DIR/status.txt" 2>&1 || true

echo "demo: a developer's edit (a word added to data/words.txt, gen:tiny's command changed); build 3 ..."
echo "zebra" >>"$BUILDROOT/data/words.txt"
sed -i 's/printf a > tiny\/a.txt/printf A > tiny\/a.txt/' "$BUILDROOT/gen/BUILD"
build edited --no-local-cache
edited_seconds="$ELAPSED"
echo "      $(plugin_summary edited)"
.venv/bin/oci-cache explain --state-dir "$STATE_DIR" >"$DEMO_DIR/explain.txt" 2>&1 || true
.venv/bin/oci-cache explain --state-dir "$STATE_DIR" --json >"$DEMO_DIR/explain.json" 2>"$DEMO_DIR/explain.err" || true
stop_daemon
# What the explanation must say: every miss with Pants' description; gen:tiny's previous
# version found, with its changed argument.
explained="$(.venv/bin/python - "$DEMO_DIR/explain.json" <<'PY'
import json, sys
try:
    misses = json.load(open(sys.argv[1]))["misses"]
except (OSError, ValueError, KeyError) as error:
    print(f"unreadable ({error})"); sys.exit()
tiny = [m for m in misses if "gen:tiny" in (m["description"] or "")]
ok = (
    misses
    and all(m["description"] for m in misses)
    and len(tiny) == 1
    and tiny[0]["nearest"] is not None
    and any(d["kind"] == "argv" and "printf A" in (d["after"] or "") for d in tiny[0]["differences"])
)
print("yes" if ok else "NO")
PY
)"

cacheable="$(counter cold remote_cache_requests)"
written="$(counter cold remote_cache_write_successes)"
lookups="$(counter warm remote_cache_requests)"
hits="$(counter warm remote_cache_requests_cached)"
problems=0
for name in remote_cache_requests_uncached remote_cache_read_errors remote_cache_request_timeouts \
  remote_cache_speculation_local_completed_first remote_store_missing_digest; do
  problems=$((problems + $(counter warm "$name")))
done
if diff -r -q "$BUILDROOT/dist-cold" "$BUILDROOT/dist-warm" >"$DEMO_DIR/outputs.diff"; then
  identical="yes"
else
  identical="NO (see $DEMO_DIR/outputs.diff)"
fi

cat <<SUMMARY

=== pants-oci-cache demo: Pants 2.17.1 + the pants_oci_cache plugin, examples/basic (${GOALS[*]}) ===
Pants start-up alone (pants --version):  ${startup_seconds} s
Build 1, cold cache:                     ${cold_seconds} s (net of start-up $(minus "$cold_seconds" "$startup_seconds") s) - ${cacheable} remote-cacheable processes run locally, ${written} written to the daemon
  plugin: $(plugin_summary cold)
Build 2, fresh machine:                  ${warm_seconds} s (net of start-up $(minus "$warm_seconds" "$startup_seconds") s) - ${hits} of ${lookups} processes served from the cache image, $((lookups - hits)) run locally
  plugin: $(plugin_summary warm)
Outputs of both builds byte-identical:   ${identical}
Build 3, after an edit:                  ${edited_seconds} s - $(counter edited remote_cache_requests_uncached) misses, $(counter edited remote_cache_requests_cached) hits
  plugin: $(plugin_summary edited)

Why build 3 missed (oci-cache explain --state-dir ${STATE_DIR#"$REPO_ROOT"/}):
$(cat "$DEMO_DIR/explain.txt")

The same as JSON (oci-cache explain --json), saved in ${DEMO_DIR#"$REPO_ROOT"/}/explain.json:
$(cat "$DEMO_DIR/explain.json")
Every miss explained, gen:tiny's change named: ${explained}

The cache image (OCI image layout):      ${image_dir#"$REPO_ROOT"/}
The daemon (started by the plugin, stopped by this script): state, store and log in ${STATE_DIR#"$REPO_ROOT"/}/
Logs of the builds:                      ${DEMO_DIR#"$REPO_ROOT"/}/
SUMMARY

warnings="$(plugin_warnings cold)$(plugin_warnings warm)$(plugin_warnings edited)"
if [[ -n "$warnings" ]]; then
  echo "demo: the plugin warned:" >&2
  echo "$warnings" >&2
fi
if [[ "$cacheable" -eq 0 || "$hits" -ne "$cacheable" || "$lookups" -ne "$cacheable" || "$problems" -ne 0 \
  || "$identical" != "yes" || -z "$(plugin_summary warm)" ]]; then
  echo "demo: FAILED - build 2 was not served entirely from the cache through the plugin (see $DEMO_DIR/warm.log)." >&2
  exit 1
fi
if [[ "$explained" != "yes" ]]; then
  echo "demo: FAILED - oci-cache explain did not explain build 3's misses (see $DEMO_DIR/explain.json, $DEMO_DIR/explain.err)." >&2
  exit 1
fi
echo "demo: OK - build 2 was served entirely from the cache image, through the plugin, and build 3's misses were explained."
