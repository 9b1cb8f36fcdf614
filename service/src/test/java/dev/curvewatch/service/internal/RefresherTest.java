package dev.curvewatch.service.internal;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.FactorChunk;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.contracts.CheckpointCodec;
import dev.curvewatch.contracts.FactorCheckpointReader;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.EditCandidateParts;
import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A refresh on its thread, against Kafka's MockProducer: what it publishes on every path, and when the layer is free again. */
class RefresherTest {
    static final String RUN = "run-1";
    static final CurvewatchTopics TOPICS = new CurvewatchTopics("t.");
    static final int D_IN = 6;
    static final int D_OUT = 4;

    /** A producer that notes, at every send, whether the layer would let a newer refresh start. */
    static final class Watching extends MockProducer<String, byte[]> {
        LayerState layer;
        final List<Boolean> dueAtSend = new ArrayList<>();

        Watching(boolean autoComplete) {
            super(autoComplete, null, new StringSerializer(), new ByteArraySerializer());
        }

        @Override
        public synchronized Future<RecordMetadata> send(ProducerRecord<String, byte[]> r, Callback cb) {
            if (layer != null) {
                dueAtSend.add(layer.due(System.nanoTime(), 0));
            }
            return super.send(r, cb);
        }
    }

    final Registry registry = new Registry(new SignalHistory(100), 10, 10, 10);
    final ServiceMetrics metrics = new ServiceMetrics();

    Outputs outputs(MockProducer<String, byte[]> producer) {
        return new Outputs(producer, TOPICS, registry, new AlertEvaluator(List.of()), metrics, null, "service:test", 1 << 20);
    }

    static FactorAccumulator filled(int dim, long seed) {
        Random r = new Random(seed);
        FactorAccumulator acc = FactorAccumulator.cumulative(dim, Precision.FLOAT64);
        float[] rows = new float[10 * dim];
        for (int i = 0; i < rows.length; i++) {
            rows[i] = (float) (r.nextGaussian() * (1 + i % dim));
        }
        acc.add(3, rows, 10);
        return acc;
    }

    /** A reader holding version {@code version} of the layer's checkpoint, as the ingest thread would. */
    static FactorCheckpointReader reader(long version) {
        FactorCheckpointReader reader = new FactorCheckpointReader(k -> true);
        new CheckpointCodec(1 << 20).write(new CheckpointCodec.Provenance(RUN, "fc", version, 1, "w", "t"), filled(D_IN, version),
                filled(D_OUT, version + 100), (k, v) -> reader.accept(k.getBytes(StandardCharsets.UTF_8), v));
        return reader;
    }

    LayerState layer() {
        registry.register(RunInfo.newBuilder().setRunId(RUN).setModel("m").setSource("t").setCreatedMs(1)
                .setLayers(List.of(LayerInfo.newBuilder().setName("fc").setDIn(D_IN).setDOut(D_OUT).build())).build(), 1);
        return registry.existing(RUN, "fc").orElseThrow();
    }

    static Refresher refresher(Outputs out, ServiceMetrics metrics) {
        return new Refresher(LayerRefreshTest.refresher(), out, metrics, false);
    }

    static List<String> signalNames(MockProducer<String, byte[]> p) {
        AvroDeserializer<Signal> d = new AvroDeserializer<>(Signal.class);
        return p.history().stream().filter(r -> r.topic().equals(TOPICS.signals())).map(r -> d.decode(r.value()).getName().toString()).toList();
    }

    @Test
    void theLayerStaysInFlightUntilItsSignalsAndCandidateArePublished() {
        Watching producer = new Watching(true);
        LayerState l = layer();
        FactorCheckpointReader.Parts v1 = reader(1).detach(RUN + "/fc").orElseThrow();
        l.manifest(v1.manifest(), System.nanoTime());
        boolean silent = l.start(System.nanoTime());
        FactorManifest v2 = FactorManifest.newBuilder(v1.manifest()).setVersion(2).build();
        l.manifest(v2, System.nanoTime()); // a newer manifest while v1 is being refreshed (refresh.threads > 1 would start it)
        producer.layer = l;
        refresher(outputs(producer), metrics).run(l, v1, System.nanoTime(), silent);
        assertTrue(signalNames(producer).contains("effective_rank_g"));
        assertTrue(producer.history().stream().anyMatch(r -> r.topic().equals(TOPICS.editCandidates())), "a candidate was sent");
        assertFalse(producer.dueAtSend.isEmpty());
        assertTrue(producer.dueAtSend.stream().noneMatch(b -> b), "no newer refresh may start while v1 publishes: " + producer.dueAtSend);
        assertTrue(l.due(System.nanoTime(), 0), "free once published: v2 is next");
        assertEquals(1, l.status().refreshes());
    }

    @Test
    void aLayerOverTheRefreshMemoryBudgetIsRefusedBeforeAssemblyWithItsStatusAndSignal() {
        MockProducer<String, byte[]> producer = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
        LayerState l = layer();
        FactorCheckpointReader.Parts v1 = reader(1).detach(RUN + "/fc").orElseThrow();
        l.manifest(v1.manifest(), System.nanoTime());
        new Refresher(LayerRefreshTest.refresher(1L << 30, 1 << 20, LayerRefresh.memoryBytes(D_IN, D_OUT) - 1), outputs(producer), metrics, false)
                .run(l, v1, System.nanoTime(), l.start(System.nanoTime()));
        assertEquals(List.of("refresh_failed"), signalNames(producer));
        Signal s = new AvroDeserializer<>(Signal.class).decode(producer.history().get(0).value());
        assertEquals(1.0, s.getAttributes().get("over_budget"));
        assertEquals((double) LayerRefresh.memoryBytes(D_IN, D_OUT), s.getAttributes().get("needed_bytes"));
        assertTrue(l.status().lastFailure().contains("over refresh.memory.budget.bytes"), l.status().lastFailure());
        assertTrue(l.editView().g() == null && !l.editView().refreshPending(), "no bases, nothing in flight");
    }

    @Test
    void aCorruptCheckpointIsAFailedRefreshWithItsSignalAndReason() {
        MockProducer<String, byte[]> producer = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
        LayerState l = layer();
        FactorCheckpointReader.Parts good = reader(1).detach(RUN + "/fc").orElseThrow();
        FactorManifest lying = FactorManifest.newBuilder(good.manifest()).setSha256("ab".repeat(32)).build();
        l.manifest(lying, System.nanoTime());
        refresher(outputs(producer), metrics).run(l, new FactorCheckpointReader.Parts(lying, good.chunks()), System.nanoTime(), l.start(System.nanoTime()));
        assertEquals(List.of("refresh_failed"), signalNames(producer), "the old path (corrupt before the refresh started) published nothing");
        assertTrue(l.status().status().startsWith("refresh failed at v1: corrupt checkpoint: "), l.status().status());
        assertTrue(l.status().lastFailure().contains("checksum"), l.status().lastFailure());
        assertEquals(1, l.status().failedRefreshes());
        assertEquals(1.0, metrics.counter("curvewatch_service_refreshes_total", "failed"));
        assertFalse(l.due(System.nanoTime(), 0), "not retried until a newer manifest");
        assertTrue(l.editView().g() == null && !l.editView().refreshPending(), "no bases, nothing in flight");
    }

    @Test
    void anyExceptionOrStaleSidesIsAFailedRefreshNeverAStuckLayer() {
        MockProducer<String, byte[]> producer = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
        LayerState l = layer();
        FactorCheckpointReader.Parts good = reader(1).detach(RUN + "/fc").orElseThrow();
        // a chunk record whose tensor has no data: assembly throws a NullPointerException
        Map<String, FactorChunk> broken = new HashMap<>(good.chunks());
        String key = broken.keySet().iterator().next();
        dev.curvewatch.avro.Tensor noData = new dev.curvewatch.avro.Tensor();
        noData.setDtype(dev.curvewatch.avro.DType.FLOAT64);
        broken.put(key, FactorChunk.newBuilder(broken.get(key)).setData(noData).build());
        l.manifest(good.manifest(), System.nanoTime());
        Refresher refresher = refresher(outputs(producer), metrics);
        refresher.run(l, new FactorCheckpointReader.Parts(good.manifest(), broken), System.nanoTime(), l.start(System.nanoTime()));
        assertTrue(l.status().lastFailure().contains("NullPointerException"), l.status().lastFailure());
        assertEquals(List.of("refresh_failed"), signalNames(producer));
        assertFalse(l.editView().refreshPending(), "not stuck in flight");

        // the run re-registers the layer with other sides after the manifest arrived
        registry.register(RunInfo.newBuilder().setRunId(RUN).setModel("m").setSource("t").setCreatedMs(1)
                .setLayers(List.of(LayerInfo.newBuilder().setName("fc").setDIn(D_IN + 1).setDOut(D_OUT).build())).build(), 2);
        l.forceRefresh();
        refresher.run(l, good, System.nanoTime(), l.start(System.nanoTime()));
        assertTrue(l.status().lastFailure().contains("the run registers the layer as d_in=7"), l.status().lastFailure());
        assertEquals(List.of("refresh_failed", "refresh_failed"), signalNames(producer));
        assertEquals(2, l.status().failedRefreshes());
    }

    @Test
    void aCandidateKafkaRefusedIsDroppedNotLeftOutstanding() {
        MockProducer<String, byte[]> producer = new MockProducer<>(false, null, new StringSerializer(), new ByteArraySerializer());
        LayerState l = layer();
        FactorCheckpointReader.Parts v1 = reader(1).detach(RUN + "/fc").orElseThrow();
        l.manifest(v1.manifest(), System.nanoTime());
        refresher(outputs(producer), metrics).run(l, v1, System.nanoTime(), l.start(System.nanoTime()));
        assertTrue(l.awaitingAnswer(), "outstanding while Kafka has not answered");
        List<ProducerRecord<String, byte[]>> sent = producer.history();
        assertEquals(TOPICS.editCandidates(), sent.get(sent.size() - 1).topic(), "the candidate is sent last");
        for (int i = 0; i < sent.size() - 1; i++) {
            assertTrue(producer.completeNext());
        }
        assertTrue(producer.errorNext(new RecordTooLargeException("the candidate is larger than the broker takes")));
        assertFalse(l.awaitingAnswer(), "a refused candidate can never be answered: not outstanding, no timeout later");
        assertTrue(l.status().status().startsWith("candidate not sent: ") && l.status().status().contains("RecordTooLarge"),
                l.status().status());
        assertTrue(l.expire(Long.MAX_VALUE, 0).isEmpty(), "nothing left to time out");
        assertEquals(0, l.calibrationTimeouts());
        assertEquals(1.0, metrics.counter("curvewatch_service_candidates_failed_total"));
        assertEquals(0.0, metrics.counter("curvewatch_service_candidates_total"));
    }

    @Test
    void aCandidateAboveThePartSizeGoesOutAsConsecutivePartsAndOneRefusedPartDropsIt() {
        MockProducer<String, byte[]> producer = new MockProducer<>(false, null, new StringSerializer(), new ByteArraySerializer());
        LayerState l = layer();
        FactorCheckpointReader.Parts v1 = reader(1).detach(RUN + "/fc").orElseThrow();
        l.manifest(v1.manifest(), System.nanoTime());
        // a tiny part size splits even an 8 -> 4 layer's candidate
        new Refresher(LayerRefreshTest.refresher(1 << 20, 4096 + 560), outputs(producer), metrics, false)
                .run(l, v1, System.nanoTime(), l.start(System.nanoTime()));
        List<ProducerRecord<String, byte[]>> sent = producer.history();
        AvroDeserializer<EditCandidate> d = new AvroDeserializer<>(EditCandidate.class);
        List<EditCandidate> parts = sent.stream().filter(r -> r.topic().equals(TOPICS.editCandidates())).map(r -> d.decode(r.value())).toList();
        assertTrue(parts.size() >= 2, parts.size() + " parts");
        for (int k = 0; k < parts.size(); k++) {
            assertEquals(k, parts.get(k).getPart(), "in order");
            assertEquals(parts.size(), parts.get(k).getParts());
            assertEquals(parts.get(0).getCandidateId(), parts.get(k).getCandidateId());
        }
        assertTrue(new EditCandidateParts.Assembler().accept(parts.get(0), D_OUT, D_IN).isEmpty(), "part 0 alone is not a candidate");
        int firstPart = sent.size() - parts.size();
        for (int i = 0; i < firstPart + 1; i++) {
            assertTrue(producer.completeNext());
        }
        assertTrue(l.awaitingAnswer(), "still outstanding while later parts are in flight");
        assertTrue(producer.errorNext(new RecordTooLargeException("part 1 refused")));
        while (producer.completeNext()) {
            // the rest went through
        }
        assertFalse(l.awaitingAnswer(), "a candidate with a refused part can never be assembled: not outstanding");
        assertEquals(1.0, metrics.counter("curvewatch_service_candidates_failed_total"));
        assertEquals(0.0, metrics.counter("curvewatch_service_candidates_total"));
    }

    /** Version {@code version} of the checkpoint with its manifest's last step set to {@code step}. */
    static FactorCheckpointReader.Parts at(long version, long step) {
        FactorCheckpointReader.Parts p = reader(version).detach(RUN + "/fc").orElseThrow();
        return new FactorCheckpointReader.Parts(FactorManifest.newBuilder(p.manifest()).setStepLast(step).build(), p.chunks());
    }

    @Test
    void candidatesArePacedInTrainerStepsAndCarryTheTermsOfContractV2() {
        MockProducer<String, byte[]> producer = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
        Registry paced = new Registry(new SignalHistory(100), 10, 10, 10,
                new LayerState.Pacing(new CandidatePacer.Settings(20, 200, 0), 1));
        paced.register(RunInfo.newBuilder().setRunId(RUN).setModel("m").setSource("t").setCreatedMs(1)
                .setLayers(List.of(LayerInfo.newBuilder().setName("fc").setDIn(D_IN).setDOut(D_OUT).build())).build(), 1);
        LayerState l = paced.existing(RUN, "fc").orElseThrow();
        Refresher refresher = new Refresher(LayerRefreshTest.refresher(), new Outputs(producer, TOPICS, paced,
                new AlertEvaluator(List.of()), metrics, null, "service:test", 1 << 20), metrics, false);
        AvroDeserializer<EditCandidate> d = new AvroDeserializer<>(EditCandidate.class);
        java.util.function.Supplier<List<EditCandidate>> candidates = () -> producer.history().stream()
                .filter(r -> r.topic().equals(TOPICS.editCandidates())).map(r -> d.decode(r.value())).toList();
        long[] steps = {5, 10, 24, 25, 30, 46};
        for (int v = 0; v < steps.length; v++) {
            FactorCheckpointReader.Parts p = at(v + 1, steps[v]);
            l.manifest(p.manifest(), System.nanoTime());
            assertTrue(l.due(System.nanoTime(), 0), "refreshed at step " + steps[v]);
            refresher.run(l, p, System.nanoTime(), l.start(System.nanoTime()));
            List<EditCandidate> sent = candidates.get();
            PendingCandidate out = sent.isEmpty() ? null : l.outstanding(sent.get(sent.size() - 1).getCandidateId());
            if (out != null) {
                assertTrue(l.answered(out)); // the trainer answers at once
            }
        }
        List<Long> sentAt = candidates.get().stream().map(EditCandidate::getStep).toList();
        assertEquals(List.of(5L, 25L, 46L), sentAt, "one candidate per 20 trainer steps, however often the layer refreshes");
        assertEquals(3.0, metrics.counter("curvewatch_service_candidates_deferred_total", "paced"));
        EditCandidate c = candidates.get().get(0);
        assertEquals(dev.curvewatch.avro.CalibrationSearch.BISECT, c.getSearch());
        assertEquals(0.02, c.getAccuracyTolerance());
        assertEquals(0.05, c.getLossTolerance());
        assertEquals(List.of(3, 9), c.getTrainCandidates());
        assertEquals(8, c.getPeakTokens());
        // the same step again: no refresh (refresh.min.steps = 1), unless forced
        FactorCheckpointReader.Parts same = at(7, 46);
        l.manifest(same.manifest(), System.nanoTime());
        assertFalse(l.due(System.nanoTime(), 0), "a newer version without new trainer steps");
        l.forceRefresh();
        assertTrue(l.due(System.nanoTime(), 0));
        refresher.run(l, same, System.nanoTime(), l.start(System.nanoTime()));
        // forced, but at the step the last candidate already asked about: still paced (CandidatePacer: the same question again)
        assertEquals("paced: 0 of 20 trainer steps since the last candidate", l.status().candidatePaced(), "the layer says why");
        assertEquals(3, candidates.get().size());
    }

    @Test
    void aCandidateDeferredWhileAnotherWasOutIsSentOnceThatOneIsAnswered() {
        MockProducer<String, byte[]> producer = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
        LayerState l = layer();
        Refresher refresher = refresher(outputs(producer), metrics);
        AvroDeserializer<EditCandidate> d = new AvroDeserializer<>(EditCandidate.class);
        java.util.function.Supplier<List<Long>> sentVersions = () -> producer.history().stream()
                .filter(r -> r.topic().equals(TOPICS.editCandidates())).map(r -> d.decode(r.value()).getFactorVersion()).toList();
        for (long v = 1; v <= 2; v++) {
            FactorCheckpointReader.Parts p = reader(v).detach(RUN + "/fc").orElseThrow();
            l.manifest(p.manifest(), System.nanoTime());
            refresher.run(l, p, System.nanoTime(), l.start(System.nanoTime()));
        }
        assertEquals(List.of(1L), sentVersions.get(), "v2's candidate waits: v1's is out");
        assertEquals(null, l.startOwedCandidate(), "not while v1's is out");
        PendingCandidate v1 = l.outstanding(d.decode(producer.history().stream().filter(r -> r.topic().equals(TOPICS.editCandidates()))
                .findFirst().orElseThrow().value()).getCandidateId());
        assertTrue(l.answered(v1));
        LayerState.Bases owed = l.startOwedCandidate();
        assertEquals(2, owed.version(), "the newest bases, no new manifest needed (a trainer that stopped still gets them calibrated)");
        assertFalse(l.due(System.nanoTime(), 0), "in flight while it is sent");
        refresher.sendOwed(l, owed);
        assertEquals(List.of(1L, 2L), sentVersions.get());
        assertTrue(l.awaitingAnswer());
        assertEquals(null, l.startOwedCandidate(), "owed once");
    }
}
