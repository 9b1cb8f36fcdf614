package dev.curvewatch.service;

import java.util.Map;

/**
 * The dead letters of one run or layer, as the service read them from topic dead-letters: how
 * many, by reason code and by the topic the record came from, and the latest one.
 *
 * @param byReason   count per reason code (at most 16 codes; the rest count as OTHER)
 * @param byTopic    count per original topic, without the topic prefix (e.g. "captures")
 * @param lastReason the latest one's reason text (cut to 512 characters), null when none
 * @param lastMs     when the latest one was written (epoch ms), -1 when none
 */
public record DeadLetterSummary(long total, Map<String, Long> byReason, Map<String, Long> byTopic, String lastReasonCode,
                                String lastReason, String lastTopic, String lastComponent, long lastMs) {
    public static final DeadLetterSummary NONE = new DeadLetterSummary(0, Map.of(), Map.of(), null, null, null, null, -1);

    public DeadLetterSummary {
        byReason = Map.copyOf(byReason);
        byTopic = Map.copyOf(byTopic);
    }
}
