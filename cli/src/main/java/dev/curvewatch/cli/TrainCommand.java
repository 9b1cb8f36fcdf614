package dev.curvewatch.cli;

import dev.curvewatch.trainer.CapturePublisher;
import dev.curvewatch.trainer.experiments.ReportFiles;
import dev.curvewatch.trainer.experiments.WatchedTraining;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code curvewatch train}: a watched DJL fine-tune (noisy-label MLP) publishing captures to a broker. */
@Command(name = "train", mixinStandardHelpOptions = true,
        description = "Train the noisy-label MLP with capture of its hidden layers fc1, fc2: RunInfo, a Capture per "
                + "layer per step, held-out probe captures and weight snapshots go to Kafka (--bootstrap); without "
                + "--bootstrap, factors are accumulated in-process and their spectra printed. With --bootstrap the "
                + "trainer also answers the service's edit candidates with probe results and can follow (and apply) "
                + "its edited snapshots.")
public final class TrainCommand implements Callable<Integer> {
    @Option(names = "--bootstrap", description = "Kafka bootstrap servers; omit to run offline.")
    String bootstrap;

    @Option(names = "--run-id", defaultValue = "djl-run-1", description = "Run id (default ${DEFAULT-VALUE}).")
    String runId;

    @Option(names = "--seed", defaultValue = "1")
    long seed;

    @Option(names = "--noise", defaultValue = "0.1", description = "Fraction of flipped labels (default ${DEFAULT-VALUE}).")
    double noise;

    @Option(names = "--hidden", defaultValue = "512", description = "Hidden width (default ${DEFAULT-VALUE}).")
    int hidden;

    @Option(names = "--epochs", defaultValue = "30", description = "Epochs of 20 steps (default ${DEFAULT-VALUE}).")
    int epochs;

    @Option(names = "--steps", description = "Total steps instead of --epochs; rounded up to whole epochs of 20 steps.")
    Integer steps;

    @Option(names = "--lr", defaultValue = "0.001")
    float lr;

    @Option(names = "--weights-every", defaultValue = "20", description = "Publish W every N steps (0 = never).")
    int weightsEvery;

    @Option(names = "--probe-every", defaultValue = "10", description = "Publish a probe capture every N steps (0 = never).")
    int probeEvery;

    @Option(names = "--fisher", defaultValue = "SAMPLED", description = "SAMPLED (extra pass with model-sampled labels) or EMPIRICAL.")
    String fisher;

    @Option(names = "--tokens-per-step", defaultValue = "0",
            description = "Publish at most this many randomly chosen tokens (examples) per step, the same ones for every "
                    + "layer; 0 = all (default).")
    int tokensPerStep;

    @Option(names = "--policy", defaultValue = "BLOCK", description = "When Kafka is slow: BLOCK or DROP (counted).")
    CapturePublisher.Policy policy;

    @Option(names = "--in-flight-mb", defaultValue = "64", description = "Bound on unacknowledged bytes (default ${DEFAULT-VALUE}).")
    int inFlightMb;

    @Option(names = "--init-weights", description = "Start from a safetensors file (fc<l>.weight/.bias), e.g. `curvewatch edit` output.")
    Path initWeights;

    @Option(names = "--save-weights", description = "Write the final weights as safetensors.")
    Path saveWeights;

    @Option(names = "--save-factors", description = "Write the in-process factors as safetensors <layer>.A/.G (input for `curvewatch edit`).")
    Path saveFactors;

    @Option(names = "--inject-noise-at-epoch", defaultValue = "0",
            description = "Train on the true labels for N epochs, then on the flipped ones (memorization injected "
                    + "mid-run); 0 = flipped from the start (default).")
    int injectNoiseAtEpoch;

    @Option(names = "--answer-candidates", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "With --bootstrap: answer the service's edit candidates with probe results (default on; "
                    + "--no-answer-candidates turns it off).")
    boolean answerCandidates;

    @Option(names = "--snapshot-dir", description = "With --bootstrap: the service's snapshot store; follow this run's "
            + "edited snapshots from topic snapshots (verified: path inside the store, size, sha256, tensors).")
    Path snapshotDir;

    @Option(names = "--apply-snapshots", description = "Load verified edited snapshots into the model between steps and "
            + "continue training from them (needs --snapshot-dir).")
    boolean applySnapshots;

    @Option(names = "--json", description = "Write the run summary as JSON.")
    Path json;

    @Override
    public Integer call() {
        try {
            int stepsPerEpoch = 20; // 2000 generated training examples in batches of 100
            int runEpochs = steps == null ? epochs : Math.max(1, (steps + stepsPerEpoch - 1) / stepsPerEpoch);
            if ((snapshotDir != null || applySnapshots) && bootstrap == null) {
                throw new IllegalArgumentException("--snapshot-dir and --apply-snapshots need --bootstrap");
            }
            WatchedTraining.Config c = new WatchedTraining.Config(runId, seed, noise, hidden, runEpochs, 100, lr,
                    weightsEvery, probeEvery, "SAMPLED".equalsIgnoreCase(fisher), tokensPerStep, bootstrap, policy,
                    inFlightMb << 20, initWeights, saveWeights, saveFactors, injectNoiseAtEpoch, answerCandidates,
                    snapshotDir, applySnapshots);
            Map<String, Object> summary = new WatchedTraining(c, System.out).run();
            if (json != null) {
                ReportFiles.json().writeValue(json.toFile(), summary);
                System.out.println("wrote " + json);
            }
            return 0;
        } catch (IOException | IllegalArgumentException e) {
            System.err.println("curvewatch train: " + e.getMessage());
            return 2;
        }
    }
}
