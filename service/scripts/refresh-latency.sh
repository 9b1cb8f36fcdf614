#!/usr/bin/env bash
# Refresh latency of the service per layer size (DESIGN §6): a fresh local broker, a worker and
# the service in one JVM; prints a markdown table (see RefreshLatencyBench for the columns).
#
#   service/scripts/refresh-latency.sh [sizes=64,256,512,1024,2048] [rounds=3] [tokens=256] [captures=4] [drift=0.5]
set -euo pipefail
cd "$(dirname "$0")/../.."
mvn -B -q -pl service -am install -DskipTests >/dev/null
mvn -B -q -pl service test-compile dependency:build-classpath -Dmdep.includeScope=test \
  -Dmdep.outputFile="$PWD/service/target/bench-classpath.txt" >/dev/null
java -Xmx6g -Dorg.apache.avro.SERIALIZABLE_PACKAGES=dev.curvewatch.avro \
  -Dorg.slf4j.simpleLogger.log.org.apache.kafka=error -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -cp "service/target/test-classes:service/target/classes:$(cat service/target/bench-classpath.txt)" \
  dev.curvewatch.service.bench.RefreshLatencyBench "$@"
