#!/usr/bin/env bash
# The paper's layer sizes end to end on this machine (issue 14 item 1): for each shape, a fresh
# local broker, a worker and the service (each a JVM of its own, shipped defaults), synthetic
# captures at a fixed token rate and a synthetic answerer for the trainer
# (integration-tests/src/test/java/dev/curvewatch/it/bench/PaperLayerBench.java). Per refresh:
# assemble, eigh of G and A, candidate built and sent, answer, calibrated signal; checkpoint MB per
# minute and seconds per checkpoint; candidate bytes; peak RSS of worker and service.
#
#   bench/paper-layer.sh [shapes=4096x4096,11008x4096] [key=value ...]
#     keys of PaperLayerBench: tokens=256 (per capture) rate=256 (tokens/s) calibrated=2 minutes=40
#     worker.xmx=3g service.xmx=8g worker.set=k=v,k=v service.set=k=v,k=v
#     answer.cost=true: also time a Java trainer's answer (AnswerCost, its own JVM with BENCH_ANSWER_XMX, 8g)
#
# Appends the report, with the date, the command, the load and the busiest other processes, to
# bench/paper-layer-results.md. The driver JVM (producer, answerer) gets BENCH_DRIVER_XMX (3g). Memory: a 11008 x 4096 layer needs about worker.xmx + service.xmx
# + 4 GiB (LAPACK workspace, broker, this driver): size them for what the machine has free.
set -euo pipefail
cd "$(dirname "$0")/.."
shapes=4096x4096,11008x4096
answer_cost=false
args=()
for a in "$@"; do
  case "$a" in
    shapes=*) shapes="${a#shapes=}" ;;
    answer.cost=*) answer_cost="${a#answer.cost=}" ;;
    *) args+=("$a") ;;
  esac
done
mvn -B -q -pl integration-tests -am install -DskipTests >/dev/null
mvn -B -q -pl integration-tests test-compile dependency:build-classpath -Dmdep.includeScope=test \
  -Dmdep.outputFile="$PWD/integration-tests/target/bench-classpath.txt" >/dev/null
# private copies: another build re-installing snapshot jars mid-run must not swap classes under the child JVMs
LIB=integration-tests/target/bench-lib
rm -rf "$LIB" && mkdir -p "$LIB"
CP="integration-tests/target/test-classes"
IFS=: read -ra JARS < integration-tests/target/bench-classpath.txt || true
for j in "${JARS[@]}"; do
  dest="$LIB/$(basename "$(dirname "$(dirname "$j")")")-$(basename "$j")"
  cp "$j" "$dest"
  CP="$CP:$dest"
done
RESULTS=bench/paper-layer-results.md
for shape in ${shapes//,/ }; do
  dout="${shape%x*}"; din="${shape#*x}"
  OUT=$(mktemp)
  others=$(ps -eo pcpu,rss,args --sort=-pcpu | grep -v -e "$PWD" -e 'ps -eo' | awk 'NR>1 && NR<=6 {printf "%s%% cpu %d MiB: %.60s; ", $1, $2/1024, substr($0, index($0,$3))}')
  java -Xmx"${BENCH_DRIVER_XMX:-3g}" -Dorg.apache.avro.SERIALIZABLE_PACKAGES=dev.curvewatch.avro \
    -Dorg.slf4j.simpleLogger.log.org.apache.kafka=error -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$CP" dev.curvewatch.it.bench.PaperLayerBench dout="$dout" din="$din" ${args[@]+"${args[@]}"} | tee "$OUT"
  if [[ "$answer_cost" == true ]]; then
    java -Xmx"${BENCH_ANSWER_XMX:-8g}" -cp "$CP" dev.curvewatch.it.bench.AnswerCost "$dout" "$din" 2>&1 | grep -v WARN | tee -a "$OUT"
  fi
  {
    echo
    echo "### $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(free -g | awk '/Mem:/ {print $2 " GiB, " $7 " GiB available"}'): bench/paper-layer.sh shapes=$shape ${args[*]:-}$([[ $answer_cost == true ]] && echo ' answer.cost=true')"
    echo
    echo "busiest other processes at the start: ${others:-none}"
    echo
    cat "$OUT"
  } >> "$RESULTS"
  rm -f "$OUT"
done
