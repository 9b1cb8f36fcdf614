package dev.curvewatch.workers.internal;

import dev.curvewatch.contracts.CheckpointCodec;
import org.apache.kafka.clients.producer.ProducerRecord;

import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.HashMap;
import java.util.Map;

/**
 * Writes the chunks and manifest of layers into the open transaction, each as its next version on
 * the factors partition of its captures partition ({@link CheckpointCodec}); the layers take
 * those versions only once the transaction committed ({@link Written#committed}).
 */
final class CheckpointWriter {
    private final CheckpointCodec codec;
    private final String factorsTopic;
    private final int factorPartitions;
    private final String instanceId;
    private final String codeVersion;

    CheckpointWriter(CheckpointCodec codec, String factorsTopic, int factorPartitions, String instanceId, String codeVersion) {
        this.codec = codec;
        this.factorsTopic = factorsTopic;
        this.factorPartitions = factorPartitions;
        this.instanceId = instanceId;
        this.codeVersion = codeVersion;
    }

    /** What a checkpoint wrote: the version of each layer and the bytes of its chunks. */
    record Written(Map<LayerFactors, Long> versions, long bytes) {
        /** The transaction committed: each layer is at its new version, unchanged since. */
        void committed() {
            versions.forEach((lf, v) -> {
                lf.version = v;
                lf.dirty = false;
            });
        }
    }

    Written write(Collection<LayerFactors> changed, TransactionalProducer producer) {
        Map<LayerFactors, Long> versions = new HashMap<>();
        long bytes = 0;
        for (LayerFactors lf : changed) {
            long version = lf.version + 1;
            int partition = lf.partition % factorPartitions;
            bytes += codec.write(new CheckpointCodec.Provenance(lf.runId, lf.layer, version, lf.captures, instanceId, codeVersion),
                    lf.a, lf.g, (key, value) -> producer.send(new ProducerRecord<>(factorsTopic, partition,
                            key.getBytes(StandardCharsets.UTF_8), value)));
            versions.put(lf, version);
        }
        return new Written(versions, bytes);
    }
}
