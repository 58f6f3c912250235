#!/usr/bin/env bash
# Save or compare loss-curve baselines with pytest-losstrend. Called by loss-curves.yml; runs
# the same on a laptop.
#
#   ci/losstrend-gate.sh save    [pytest args]   # main: record the curves under every seed
#   ci/losstrend-gate.sh compare [pytest args]   # a change: fail on a regression, write reports
#
# Settings (environment):
#   LOSSTREND_BASELINE  baseline name, a file under .losstrend/    (default: main)
#   LOSSTREND_SEEDS     seeds the baseline is saved under          (default: "0 1 2 3 4")
#   LOSSTREND_GATE      what fails a change                        (default: final:10%,auc:10%)
#   LOSSTREND_OUT       folder of the reports                      (default: losstrend-out)
#   PYTEST              how to run pytest                          (default: python -m pytest)
set -euo pipefail

mode=${1:-}
[ $# -gt 0 ] && shift
name=${LOSSTREND_BASELINE:-main}
seeds=${LOSSTREND_SEEDS:-"0 1 2 3 4"}
gate=${LOSSTREND_GATE:-"final:10%,auc:10%"}
out=${LOSSTREND_OUT:-losstrend-out}
read -r -a pytest <<< "${PYTEST:-python -m pytest}"

case "$mode" in
  save)
    # A fresh baseline from this commit alone, built beside the old one and swapped in only
    # when every seed's run passed: old seeds or removed tests do not linger, and a failing
    # run leaves the previous baseline in place.
    rm -f ".losstrend/$name.next.json"
    for seed in $seeds; do
      "${pytest[@]}" --losstrend-save="$name.next" --losstrend-seed="$seed" "$@"
    done
    mv ".losstrend/$name.next.json" ".losstrend/$name.json"
    # The staging name's lock file (each save locks NAME.json.lock): nothing saves to it now.
    rm -f ".losstrend/$name.next.json.lock"
    echo "losstrend-gate: baseline .losstrend/$name.json saved under seeds: $seeds"
    ;;
  compare)
    mkdir -p "$out"
    status=0
    "${pytest[@]}" --losstrend-compare="$name" --losstrend-compare-fail="$gate" \
      --losstrend-report=md:"$out/summary.md" --losstrend-report=json:"$out/report.json" \
      --losstrend-report=html:"$out/report.html" "$@" || status=$?
    # The Markdown summary on the job's page, pass or fail.
    if [ -n "${GITHUB_STEP_SUMMARY:-}" ] && [ -f "$out/summary.md" ]; then
      cat "$out/summary.md" >> "$GITHUB_STEP_SUMMARY"
    fi
    exit "$status"
    ;;
  *)
    echo "usage: $0 save|compare [pytest args...]" >&2
    exit 2
    ;;
esac
