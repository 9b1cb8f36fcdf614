/**
 * The Kafka Streams app (module streams): the run registry, alert de-duplication, anti-flapping
 * and routing, edit rules that turn alerts into edit requests, and dead-letter statistics.
 * Public API: {@link dev.curvewatch.streams.StreamsAppConfig}, {@link dev.curvewatch.streams.EditRule}
 * / {@link dev.curvewatch.streams.EditRules}, {@link dev.curvewatch.streams.CurvewatchTopology} and
 * {@link dev.curvewatch.streams.CurvewatchStreams}; processors live in {@code internal}.
 */
package dev.curvewatch.streams;
