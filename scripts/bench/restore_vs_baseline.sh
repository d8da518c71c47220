#!/usr/bin/env bash
# Alternates checkpoint_restore bench binaries (built from different commits) in the
# thread-CPU-time mode of `flax-runtime/benches/checkpoint_restore.rs`, pinned to one core,
# and prints each binary's percentiles per round, then the medians over the rounds.
#
# Build a binary per commit (`cargo bench -p flax-runtime --bench checkpoint_restore --no-run`,
# copying the bench file into older commits) and pass their paths:
#   scripts/bench/restore_vs_baseline.sh ROUNDS CALLS BIN...
set -euo pipefail
rounds=$1 calls=$2
shift 2
out=$(mktemp)
echo "load: $(uptime)"
for round in $(seq "$rounds"); do
  for bin in "$@"; do
    FLAX_RESTORE_CPU_CALLS=$calls taskset -c 0 "$bin" | sed "s|^|$(basename "$bin") |" | tee -a "$out"
  done
done
echo "load: $(uptime)"
echo "medians over $rounds rounds (thread CPU µs per call: p10 p50 p90):"
for bin in "$@"; do
  for case in raw target; do
    name=$(basename "$bin")
    awk -v n="$name" -v c="$case" '$1 == n && $2 == c { p10[++k] = $3; p50[k] = $4; p90[k] = $5 }
      function med(a, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
      END { printf "%s %s %.0f %.0f %.0f\n", n, c, med(p10, k), med(p50, k), med(p90, k) }' "$out"
  done
done
rm -f "$out"
