#!/usr/bin/env bash
# Side-by-side benchmark of `runbook run` against a bash floor, go-task,
# just and Ansible on the same workloads (docs/performance.md).
#
#   bench/run.sh [--quick] [--only N[,N...]] [--reps N] [--tools runbook,bash,...]
#                [--no-install] [--state-root DIR] [--timeout S] [--budget S]
#                [--markdown FILE]
#   bench/run.sh --help     (every option of the driver)
#
# Builds the release binary (set RUNBOOK_BIN to use another one), installs
# the peers on demand into bench/.peers (a git-ignored venv: PyPI go-task-bin,
# rust-just, ansible-core), then runs bench/bench.py. Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
args=()
for arg in "$@"; do
    case $arg in
        --no-install) install=0 ;;
        *) args+=("$arg") ;;
    esac
done

if [ -z "${RUNBOOK_BIN:-}" ]; then
    cargo build --release --quiet -p runbook-cli
    RUNBOOK_BIN=${CARGO_TARGET_DIR:-target}/release/runbook
fi

peers=bench/.peers
if [ "$install" = 1 ]; then
    need=()
    [ -x "$peers/bin/task" ] || need+=(go-task-bin)
    [ -x "$peers/bin/just" ] || need+=(rust-just)
    [ -x "$peers/bin/ansible-playbook" ] || need+=(ansible-core)
    if [ ${#need[@]} -gt 0 ]; then
        echo "installing peers into $peers: ${need[*]}" >&2
        [ -x "$peers/bin/pip" ] || python3 -m venv "$peers" || true
        for pkg in "${need[@]}"; do
            rm -f "$peers/failed-$pkg"
            # One package at a time, so that one failure leaves the others;
            # the reason shows in the table as the column's "n/a".
            if ! "$peers/bin/pip" install --quiet "$pkg" >"$peers/install-$pkg.log" 2>&1; then
                tail -n 3 "$peers/install-$pkg.log" >"$peers/failed-$pkg" 2>/dev/null \
                    || echo "python3 -m venv failed" >"$peers/failed-$pkg"
                echo "could not install $pkg (see $peers/install-$pkg.log)" >&2
            fi
        done
    fi
fi

exec python3 bench/bench.py --runbook "$RUNBOOK_BIN" --peers "$peers" "${args[@]}"
