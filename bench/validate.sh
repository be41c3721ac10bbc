#!/usr/bin/env bash
# Benchmark of `runbook validate` (issue: foundation). Prints wall time and
# peak RSS for 1,000 files of 50 steps, and for one 5,000-step runbook with
# long chains, wide fan-outs and templates reading ancestors.
#   bench/validate.sh            (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p runbook-cli
bin=${CARGO_TARGET_DIR:-target}/release/runbook
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen_runbooks.py many "$work/many" 1000 50
python3 bench/gen_runbooks.py big "$work/big.yaml" 5000
python3 bench/gen_runbooks.py big "$work/big20k.yaml" 20000

measure() {
    local label=$1; shift
    local best="" rss=""
    for _ in 1 2 3 4 5; do
        local out
        /usr/bin/time -o "$work/time" -f '%e %M' "$@" >/dev/null 2>&1 || true
        out=$(tail -n1 "$work/time")
        local wall=${out% *} kib=${out#* }
        if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then best=$wall; rss=$kib; fi
    done
    printf '| %-44s | %8.3f s | %8.1f MiB |\n' "$label" "$best" "$(awk "BEGIN{print $rss/1024}")"
}

echo "machine: $(nproc) cores, $(uname -srm)"
echo "| workload | wall (best of 5) | peak RSS |"
echo "|---|---|---|"
measure "validate 1,000 files x 50 steps" "$bin" validate "$work/many"
measure "validate one 5,000-step runbook" "$bin" validate "$work/big.yaml"
measure "validate one 20,000-step runbook (linearity)" "$bin" validate "$work/big20k.yaml"
measure "plan one 5,000-step runbook" "$bin" plan "$work/big.yaml"
