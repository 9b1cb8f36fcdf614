package dev.curvewatch.sinks.internal;

import dev.curvewatch.avro.Alert;

/** An alert read from the alerts topic, with where it came from (for its dead letter). */
public record Delivery(Alert alert, String topic, int partition, long offset, byte[] key, byte[] value) {
}
