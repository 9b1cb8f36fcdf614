package dev.curvewatch.workers.internal;

import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.contracts.FactorCheckpoints;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.CurvewatchTopics;

import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/**
 * Brings back the layers of captures partitions a worker takes on: scans the matching factors
 * partitions (read_committed, to their end) for the newest complete checkpoint of every layer
 * whose captures live there, and rebuilds its A and G accumulators, within the factor budget.
 *
 * <p>A checkpoint over the budget is not restored, and its layer is refused ({@link #refusal})
 * for as long as the worker owns its partition, so that budget freed later never starts it again
 * from zero under an older version than its checkpoint's.
 */
public final class LayerRestore {
    private static final Logger log = LoggerFactory.getLogger(LayerRestore.class);

    private final KafkaConsumer<byte[], byte[]> restoreConsumer;
    private final String factorsTopic;
    private final int capturePartitions;
    private final int factorPartitions;
    private final FactorBudget budget;
    private final Precision precision;
    private final Duration timeout;
    /** Layers whose checkpoint was over the budget at restore, with the reason. */
    private final Map<String, String> unrestored = new HashMap<>();

    public LayerRestore(KafkaConsumer<byte[], byte[]> restoreConsumer, CurvewatchTopics topics, int capturePartitions,
                        int factorPartitions, FactorBudget budget, Precision precision, Duration timeout) {
        this.restoreConsumer = restoreConsumer;
        this.factorsTopic = topics.factors();
        this.capturePartitions = capturePartitions;
        this.factorPartitions = factorPartitions;
        this.budget = budget;
        this.precision = precision;
        this.timeout = timeout;
    }

    /**
     * Restores every layer of these captures partitions that has a checkpoint, handing each to
     * {@code restored} as soon as it is built (so {@code heldBytes}, asked before each layer,
     * counts the ones before it).
     *
     * @return the number of checkpoints found (restored or refused)
     */
    public int restore(Set<TopicPartition> parts, LongSupplier heldBytes, Consumer<LayerFactors> restored) {
        Set<Integer> ids = new HashSet<>();
        Set<TopicPartition> factorParts = new HashSet<>();
        for (TopicPartition tp : parts) {
            ids.add(tp.partition());
            factorParts.add(new TopicPartition(factorsTopic, tp.partition() % factorPartitions));
        }
        long t0 = System.nanoTime();
        Map<String, FactorCheckpoint> found = FactorCheckpoints.scan(restoreConsumer, factorParts,
                runLayer -> ids.contains(CaptureValidator.partitionForKey(runLayer, capturePartitions)), timeout);
        for (Map.Entry<String, FactorCheckpoint> e : found.entrySet()) {
            FactorCheckpoint cp = e.getValue();
            String refusal = budget.refusal(e.getKey(), cp.manifest().getDIn(), cp.manifest().getDOut(), heldBytes.getAsLong());
            if (refusal != null) {
                // not taken on: the layer's later captures become dead letters, as for a layer first seen now
                log.warn("not restoring {}: {}", e.getKey(), refusal);
                unrestored.put(e.getKey(), "its checkpoint (version " + cp.version() + ") could not be restored: " + refusal);
                continue;
            }
            FactorAccumulator a = FactorAccumulator.restore(cp.a());
            FactorAccumulator g = FactorAccumulator.restore(cp.g());
            if (a.precision() != precision) {
                log.warn("layer {} was checkpointed in {}, this worker is configured for {}; continuing in {}",
                        e.getKey(), a.precision(), precision, a.precision());
            }
            int partition = CaptureValidator.partitionForKey(e.getKey(), capturePartitions);
            restored.accept(new LayerFactors(e.getKey(), cp.runId(), cp.layer(), partition, a, g, cp.version(),
                    cp.manifest().getCaptures()));
        }
        if (!found.isEmpty()) {
            log.info("restored {} layers of partitions {} in {} ms", found.size(), ids, (System.nanoTime() - t0) / 1_000_000);
        }
        return found.size();
    }

    /** Why this layer's checkpoint was not restored, or null if it was not refused. */
    public String refusal(String runLayer) {
        return unrestored.get(runLayer);
    }

    /** Forgets the refusals of layers of these captures partitions (given up). */
    public void forget(Set<Integer> partitions) {
        unrestored.keySet().removeIf(key -> partitions.contains(CaptureValidator.partitionForKey(key, capturePartitions)));
    }
}
