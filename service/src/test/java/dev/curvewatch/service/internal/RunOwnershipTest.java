package dev.curvewatch.service.internal;

import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RunOwnershipTest {
    @Test
    void aRunIsOwnedWithThePartitionItsEditRequestsGoTo() {
        for (String run : List.of("run-1", "ha-run-0", "x")) {
            // the Kafka producer's own partitioner for a keyed record
            assertEquals(BuiltInPartitioner.partitionForKey(run.getBytes(StandardCharsets.UTF_8), 4), RunOwnership.partitionOf(run, 4), run);
        }
        RunOwnership o = RunOwnership.byAssignment();
        o.partitions(4);
        assertFalse(o.owns("run-1"), "nothing before the first assignment");
        long g = o.generation();
        int p = RunOwnership.partitionOf("run-1", 4);
        o.onPartitionsAssigned(List.of(new TopicPartition("edit-requests", p)));
        assertTrue(o.owns("run-1"));
        assertTrue(o.generation() > g);
        g = o.generation();
        o.onPartitionsAssigned(List.of());
        assertEquals(g, o.generation(), "no change, no new generation");
        o.onPartitionsLost(List.of(new TopicPartition("edit-requests", p)));
        assertFalse(o.owns("run-1"));
        assertTrue(RunOwnership.everything().owns("any"));
    }
}
