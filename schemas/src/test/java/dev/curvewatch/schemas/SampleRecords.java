package dev.curvewatch.schemas;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.ExampleScores;
import dev.curvewatch.avro.FactorChunk;
import dev.curvewatch.avro.FactorKind;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.ScoreKind;
import dev.curvewatch.avro.Severity;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.WeightSnapshot;
import org.apache.avro.specific.SpecificRecord;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;
import java.util.Random;

/** One populated instance of every record type, with random tensor contents. Shared with other modules' tests. */
public final class SampleRecords {
    private SampleRecords() {
    }

    public static float[] randomFloats(Random rnd, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) rnd.nextGaussian();
        }
        return v;
    }

    public static Capture capture(Random rnd, String run, String layer, long step, int tokens, int dIn, int dOut) {
        List<String> ids = new java.util.ArrayList<>();
        for (int t = 0; t < tokens; t++) {
            ids.add("ex-" + step + "-" + t);
        }
        return Capture.newBuilder()
                .setRunId(run).setLayer(layer).setStep(step).setFisher(FisherKind.SAMPLED)
                .setActivations(TensorCodec.ofFloats(randomFloats(rnd, tokens * dIn), tokens, dIn))
                .setGradients(TensorCodec.ofFloats(randomFloats(rnd, tokens * dOut), tokens, dOut))
                .setGradScale(tokens).setSampleIds(ids).setTimestampMs(1_700_000_000_000L + step)
                .build();
    }

    public static List<SpecificRecord> oneOfEach(Random rnd) {
        ExampleScore score = new ExampleScore("ex-1", 0.5);
        LayerRho rho = new LayerRho("fc1", 0.6);
        return List.of(
                RunInfo.newBuilder().setRunId("run-1").setModel("mlp").setCreatedMs(1L)
                        .setLayers(List.of(LayerInfo.newBuilder().setName("fc1").setDIn(4).setDOut(3).build()))
                        .setFactorMode(FactorMode.EMA).setEmaDecay(0.99).setConfig(Map.of("lr", "0.01")).build(),
                capture(rnd, "run-1", "fc1", 7, 5, 4, 3),
                WeightSnapshot.newBuilder().setRunId("run-1").setLayer("fc1").setStep(7)
                        .setWeight(TensorCodec.ofFloats(randomFloats(rnd, 12), 3, 4)).setTimestampMs(2L).build(),
                FactorChunk.newBuilder().setRunId("run-1").setLayer("fc1").setFactor(FactorKind.A).setVersion(3)
                        .setIndex(0).setCount(1).setOffset(0).setDim(4)
                        .setData(TensorCodec.ofDoubles(new double[16], 16)).build(),
                FactorManifest.newBuilder().setRunId("run-1").setLayer("fc1").setVersion(3).setDIn(4).setDOut(3)
                        .setTokenCount(10).setWeight(10).setStepFirst(0).setStepLast(7).setChunksA(1).setChunksG(1)
                        .setSha256("00").setCreatedMs(3L).build(),
                EditCandidate.newBuilder().setCandidateId("c1").setRunId("run-1").setLayer("fc1").setStep(7).setFactorVersion(3)
                        .setBasisG(TensorCodec.ofDoubles(new double[9], 3, 3)).setBasisA(TensorCodec.ofDoubles(new double[16], 4, 4))
                        .setEigenvaluesG(TensorCodec.ofDoubles(new double[3], 3)).setEigenvaluesA(TensorCodec.ofDoubles(new double[4], 4))
                        .setRhos(List.of(0.6, 0.9)).setThresholds(List.of(0.1, 0.01)).setCreatedMs(4L).build(),
                ProbeResult.newBuilder().setRunId("run-1").setCandidateId("c1").setLayer("fc1").setStep(8).setRhos(List.of(0.6))
                        .setExamples(List.of(ExampleLosses.newBuilder().setSampleId("p1").setProbe(true).setLossNow(0.3f)
                                .setLossEdited(List.of(0.4f)).setCorrectEdited(List.of(true)).build()))
                        .setTimestampMs(5L).build(),
                Signal.newBuilder().setRunId("run-1").setLayer("fc1").setStep(8).setName("memorization_gap").setValue(0.2)
                        .setAttributes(Map.of("mass_90", 12.0)).setTimestampMs(6L).build(),
                ExampleScores.newBuilder().setRunId("run-1").setStep(8).setKind(ScoreKind.EXACT).setScores(List.of(score))
                        .setTimestampMs(7L).build(),
                Alert.newBuilder().setId("a1").setFingerprint("fp").setRunId("run-1").setStep(8).setLayer("fc1")
                        .setRule("gap").setSignal("memorization_gap").setValue(0.7).setThreshold(0.3)
                        .setSeverity(Severity.CRITICAL).setStatus(AlertStatus.FIRING).setFirstSeenMs(1).setLastSeenMs(2)
                        .setTopExamples(List.of(score)).setSummary("gap 0.70 > 0.30").build(),
                EditRequest.newBuilder().setIdempotencyKey("k1").setRunId("run-1").setLayers(List.of(rho))
                        .setRequester("alice").setCreatedMs(9L).build(),
                SnapshotEvent.newBuilder().setSnapshotId("s1").setRunId("run-1").setStep(8).setIdempotencyKey("k1")
                        .setUri("snapshots/run-1/s1.safetensors").setSha256("ab").setSizeBytes(100).setDtype(DType.FLOAT32)
                        .setLayers(List.of(rho)).setFactorVersions(Map.of("fc1", 3L)).setCreatedMs(10L).build(),
                DeadLetter.newBuilder().setTopic("curvewatch.captures").setPartition(0).setOffset(12)
                        .setOriginalValue(ByteBuffer.wrap(new byte[]{1, 2, 3})).setReasonCode("TRUNCATED")
                        .setReason("too short").setComponent("worker-1").setFailedMs(11L).build(),
                GuardDecision.newBuilder().setId("g1").setRunId("run-1").setLayer("fc1").setStep(8).setAction(GuardAction.EDIT)
                        .setReason("gap-jump fired").setSource("streams:test").setRule("gap-guard").setAlertFingerprint("fp")
                        .setIdempotencyKey("k1").setLayers(List.of(rho)).setDetails(Map.of("edits", "1")).setCreatedMs(12L).build(),
                dev.curvewatch.avro.ServiceLayerState.newBuilder().setRunId("run-1").setLayer("fc1").setWeightsPartition(2)
                        .setWeightsOffset(40).setCandidate(dev.curvewatch.avro.OutstandingCandidate.newBuilder().setCandidateId("c1")
                                .setStep(8).setFactorVersion(3).setRhos(List.of(0.6)).setThresholds(List.of(0.1)).setKeptPairs(List.of(5L))
                                .setTotalPairs(12).setSentMs(13L).build()).setUpdatedMs(14L).build());
    }
}
