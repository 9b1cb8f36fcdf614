package dev.curvewatch.workers.internal;

import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class HeldPartitionsTest {
    private static TopicPartition tp(int p) {
        return new TopicPartition("c", p);
    }

    @Test
    void offsetsAreOnePastTheLastRecordOfHeldPartitionsOnlyAndTheCountIsPublishedWhenTold() {
        HeldPartitions held = new HeldPartitions();
        held.add(List.of(tp(0), tp(1), tp(2)));
        assertEquals(0, held.count(), "not published yet");
        held.publish();
        assertEquals(3, held.count());
        held.advanced(tp(0), 41);
        held.advanced(tp(1), 7);
        held.advanced(tp(2), 9);
        assertEquals(Map.of(tp(0), new OffsetAndMetadata(42), tp(2), new OffsetAndMetadata(10)), held.offsets(Set.of(0, 2, 3)));

        held.remove(List.of(tp(1)));
        assertFalse(held.contains(tp(1)));
        assertTrue(held.contains(tp(0)));
        assertEquals(3, held.count(), "the published count changes only at publish");
        held.add(List.of(tp(1)));
        assertEquals(Map.of(), held.offsets(Set.of(1)), "a partition given up and taken back has no position");
        held.publish();
        assertEquals(3, held.count());
    }
}
