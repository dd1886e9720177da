# shellcheck shell=bash
# Long build steps say what they do and how long so far. Sourced by the lab's build scripts.
#
#   PROGRESS_NAME=build-image          the prefix of every line (stderr)
#   progress_run "debootstrap bookworm" cmd args...
#       prints "NAME: debootstrap bookworm (step 2, 1m05s since the start)", runs the command,
#       then "NAME: still debootstrap bookworm: 30s so far" every PROGRESS_INTERVAL seconds (30)
#       while it runs; returns the command's status.

progress_started=$SECONDS
progress_steps=0
# the stderr of the sourcing script, kept: a step's own output may be sent to a log file
# (`progress_run ... >log 2>&1`), its progress lines still reach the terminal
exec {progress_fd}>&2

progress_elapsed() {
  local s=$1
  if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

progress_run() {
  local what=$1 began=$SECONDS pid n=0 interval=${PROGRESS_INTERVAL:-30}
  shift
  progress_steps=$((progress_steps + 1))
  echo "${PROGRESS_NAME:-build}: $what (step $progress_steps, $(progress_elapsed $((SECONDS - progress_started))) since the start)" >&"$progress_fd"
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    n=$((n + 1))
    if ((n % interval == 0)) && kill -0 "$pid" 2>/dev/null; then
      echo "${PROGRESS_NAME:-build}: still $what: $(progress_elapsed $((SECONDS - began))) so far" >&"$progress_fd"
    fi
  done
  wait "$pid"
}
