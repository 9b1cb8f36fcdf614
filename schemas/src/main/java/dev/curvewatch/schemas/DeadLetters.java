package dev.curvewatch.schemas;

import dev.curvewatch.avro.DeadLetter;

import java.nio.ByteBuffer;

/** The one way every component turns a rejected record into a {@link DeadLetter}. */
public final class DeadLetters {
    private DeadLetters() {
    }

    /**
     * @param maxValueBytes longer original values keep only this prefix ({@code value_truncated},
     *                      {@code original_size} say so), so a dead letter always fits its topic
     * @param component     who rejected it, e.g. {@code worker:<id>} or {@code streams:<app id>}
     */
    public static DeadLetter of(String topic, int partition, long offset, byte[] key, byte[] value, int maxValueBytes,
                                InvalidRecordException reason, String component) {
        boolean truncated = value != null && value.length > maxValueBytes;
        ByteBuffer kept = value == null ? null : ByteBuffer.wrap(value, 0, truncated ? maxValueBytes : value.length).slice();
        return DeadLetter.newBuilder()
                .setTopic(topic).setPartition(partition).setOffset(offset)
                .setOriginalKey(key == null ? null : ByteBuffer.wrap(key))
                .setOriginalValue(kept)
                .setValueTruncated(truncated)
                .setOriginalSize(value == null ? -1 : value.length)
                .setReasonCode(reason.reason().name())
                .setReason(reason.getMessage())
                .setComponent(component)
                .setFailedMs(System.currentTimeMillis())
                .build();
    }
}
