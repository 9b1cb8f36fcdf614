package dev.curvewatch.service.internal;

import dev.curvewatch.service.DeadLetterSummary;

import java.util.TreeMap;

/**
 * Counts of the dead letters of one run or layer, bounded whatever the records say: at most
 * {@link #MAX_KEYS} reason codes and original topics (the rest count as OTHER), the latest
 * reason cut to {@link #MAX_REASON_CHARS}. Thread-safe.
 */
final class DeadLetterStats {
    static final int MAX_KEYS = 16;
    static final int MAX_REASON_CHARS = 512;
    static final String OTHER = "OTHER";

    private final TreeMap<String, Long> byReason = new TreeMap<>();
    private final TreeMap<String, Long> byTopic = new TreeMap<>();
    private long total;
    private String lastCode;
    private String lastReason;
    private String lastTopic;
    private String lastComponent;
    private long lastMs = -1;

    synchronized void add(String topic, String code, String reason, String component, long failedMs) {
        total++;
        count(byReason, code);
        count(byTopic, topic);
        if (failedMs >= lastMs) {
            lastMs = failedMs;
            lastCode = cut(code, 64);
            lastReason = cut(reason, MAX_REASON_CHARS);
            lastTopic = cut(topic, 256);
            lastComponent = cut(component, 256);
        }
    }

    synchronized long total() {
        return total;
    }

    synchronized DeadLetterSummary summary() {
        return total == 0 ? DeadLetterSummary.NONE
                : new DeadLetterSummary(total, byReason, byTopic, lastCode, lastReason, lastTopic, lastComponent, lastMs);
    }

    private static void count(TreeMap<String, Long> m, String key) {
        String k = key == null || key.isEmpty() ? OTHER : cut(key, 64);
        if (!m.containsKey(k) && m.size() >= MAX_KEYS - 1 && !k.equals(OTHER)) {
            k = OTHER; // one slot stays for OTHER
        }
        m.merge(k, 1L, Long::sum);
    }

    private static String cut(String s, int max) {
        return s == null || s.length() <= max ? s : s.substring(0, max) + "...";
    }
}
