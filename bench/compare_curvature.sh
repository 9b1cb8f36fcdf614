#!/usr/bin/env bash
# Curvature speed against torch/scipy/numpy on the same machine in the same run (DESIGN §6).
#   bench/compare_curvature.sh          full set (~25 min on 2 cores)
#   bench/compare_curvature.sh quick    reduced set (~6 min)
# Each shape runs in JMH and then, right after, in torch/scipy/numpy, so both sides see about the
# same load on a shared machine; both sides report their best iteration. The table lands in
# bench/target/compare/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/target/compare
rm -rf "$out" && mkdir -p "$out"
mvn -B -o -q -pl bench -am package -DskipTests -DskipITs

dims="512 1024 2048 4096"; eigh="1024 2048 4096"; tokens=512,4096
if [[ "${1:-}" == quick ]]; then
  dims="1024 4096"; eigh="1024 2048"; tokens=4096
fi

group() { # name, JMH args...
  local name=$1; shift
  java -jar bench/target/benchmarks.jar "$@" -rf json -rff "$out/$name.json" > "$out/$name.log"
  /usr/bin/python3 bench/compare_curvature.py "$out/$name.json" "$out/table.md" | grep -v '^|---' | grep -v '^| benchmark'
}

head -n 2 <(printf '| benchmark | shape | Java (curvature) | reference | Java/ref | target | met |\n|---|---|---|---|---|---|---|\n')
for d in $dims; do
  for t in ${tokens//,/ }; do group "accumulate-$t-$d" AccumulationBenchmark -p tokens="$t" -p dim="$d"; done
done
for n in $eigh; do group "eigh-$n" EighBenchmark -p n="$n"; done
group accumulate-array AccumulationBenchmark -p tokens=4096 -p dim=4096 -p input=ARRAY
group eigh-float32 EighBenchmark -p n=4096 -p precision=FLOAT32
group selection SelectionBenchmark
group edit EditBenchmark -p d=4096
