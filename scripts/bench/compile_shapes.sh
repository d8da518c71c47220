#!/usr/bin/env bash
# Compile-time cost of the shape pass (issue 11: "the shape pass may add at most 10%").
#
# Builds the examples crate's examples with their `#[shape(…)]` declarations ("on") and with
# those lines removed ("off": the pass is opt-in, so an undeclared method is neither checked
# nor given a guard or `const` items — exactly the build before declarations). Only the
# examples are rebuilt each time (`touch`); flax-runtime and the dependencies stay compiled.
# The two variants alternate round by round, so a change of the machine's load hits both.
# Reports wall time and the CPU time (user + sys) of cargo and rustc, the steadier of the two
# on a shared machine, as medians, with `uptime` before and after.
#
# Usage: scripts/bench/compile_shapes.sh [ROUNDS] [check|build]   (defaults: 5, check)
# Needs LIBTORCH set like any cargo call here. The declarations are put back on exit (also on
# Ctrl-C); if the script is killed hard, `git checkout examples/examples` restores them.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
mode=${2:-check}
: "${LIBTORCH:?set LIBTORCH (see README: Development)}"
export CARGO_INCREMENTAL=0

mapfile -t declared < <(grep -l '#\[shape(' examples/examples/*.rs)
backup=$(mktemp -d)
cp "${declared[@]}" "$backup/"
restore() { for f in "${declared[@]}"; do cp "$backup/$(basename "$f")" "$f"; done; }
trap 'restore; rm -rf "$backup"' EXIT
strip() { sed -i '/^[[:space:]]*#\[shape(.*)\][[:space:]]*$/d' "${declared[@]}"; }
set_variant() { restore; if [ "$1" = off ]; then strip; fi; }

# One timed build of the examples: prints "wall cpu" in seconds.
timed() {
    touch examples/examples/*.rs
    /usr/bin/time -f '%e %U %S' -o "$backup/time" cargo "$mode" -q -p flax-examples --examples
    awk '{ printf "%.2f %.2f\n", $1, $2 + $3 }' "$backup/time"
}

echo "compile_shapes: cargo $mode -p flax-examples --examples, $rounds rounds, declarations in ${#declared[@]} files"
echo "load before: $(uptime)"
for variant in on off; do set_variant "$variant"; timed > /dev/null; done # warm-up
declare -A results=([on]="" [off]="")
for ((r = 1; r <= rounds; r++)); do
    order=(on off)
    if ((r % 2 == 0)); then order=(off on); fi
    for variant in "${order[@]}"; do
        set_variant "$variant"
        t=$(timed)
        results[$variant]+="$t"$'\n'
        echo "round $r $variant: wall ${t% *} s, cpu ${t#* } s"
    done
done
echo "load after: $(uptime)"

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for what in wall cpu; do
    col=1
    if [ "$what" = cpu ]; then col=2; fi
    on=$(printf '%s' "${results[on]}" | awk -v c=$col 'NF { print $c }' | median)
    off=$(printf '%s' "${results[off]}" | awk -v c=$col 'NF { print $c }' | median)
    on_all=$(printf '%s' "${results[on]}" | awk -v c=$col 'NF { printf "%s ", $c }')
    off_all=$(printf '%s' "${results[off]}" | awk -v c=$col 'NF { printf "%s ", $c }')
    awk -v w="$what" -v a="$on" -v b="$off" -v aa="$on_all" -v bb="$off_all" 'BEGIN {
        printf "%s median: declared %.2f s, undeclared %.2f s, difference %+.1f%% (declared: %s| undeclared: %s)\n",
            w, a, b, 100 * (a - b) / b, aa, bb }'
done
