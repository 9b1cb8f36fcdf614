package dev.curvewatch.cli;

import dev.curvewatch.trainer.experiments.CanariesExperiment;
import dev.curvewatch.trainer.experiments.CanariesReport;
import dev.curvewatch.trainer.experiments.GapReport;
import dev.curvewatch.trainer.experiments.MemorizationGapExperiment;
import dev.curvewatch.trainer.experiments.NoisyLabelsExperiment;
import dev.curvewatch.trainer.experiments.NoisyLabelsReport;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code curvewatch experiment ...}: the paper's experiments in miniature (trainer module, DESIGN §6). */
@Command(name = "experiment", mixinStandardHelpOptions = true,
        description = "Run an experiment of the trainer module; writes JSON plus a markdown report with PNG plots.",
        subcommands = {ExperimentCommand.NoisyLabels.class, ExperimentCommand.MemorizationGap.class,
            ExperimentCommand.Canaries.class})
public final class ExperimentCommand implements Callable<Integer> {

    @Override
    public Integer call() {
        System.err.println("curvewatch experiment: choose noisy-labels, memorization-gap or canaries (see --help)");
        return 2;
    }

    /** MLP fits flipped labels; calibrated curvature edit; detection AUROCs. */
    @Command(name = "noisy-labels", mixinStandardHelpOptions = true,
            description = "MLP on generated 10-class data with flipped labels; K-FAC edit of the hidden layer chosen "
                    + "and calibrated on held-out probes; before/after accuracy and detection AUROCs.")
    public static final class NoisyLabels implements Callable<Integer> {
        @Option(names = "--seed", defaultValue = "1", description = "Seed for data, model and sampling (default ${DEFAULT-VALUE}).")
        long seed;

        @Option(names = "--noise", defaultValue = "0.1", description = "Fraction of flipped training labels (default ${DEFAULT-VALUE}).")
        double noise;

        @Option(names = "--size", defaultValue = "full",
                description = "full (2000 train, 512-wide, 150 epochs) or small (the CI size: 256-wide, 80 epochs).")
        String size;

        @Option(names = "--tolerance", description = "Allowed probe-accuracy drop for calibration (default 0.01).")
        Double tolerance;

        @Option(names = "--json", defaultValue = "noisy-labels.json", description = "JSON output; the report goes beside it.")
        Path json;

        @Override
        public Integer call() {
            NoisyLabelsExperiment.Config c = "small".equals(size)
                    ? NoisyLabelsExperiment.Config.small(seed, noise) : NoisyLabelsExperiment.Config.full(seed, noise);
            if (tolerance != null) {
                c = new NoisyLabelsExperiment.Config(c.seed(), c.noise(), c.dim(), c.classes(), c.separation(),
                        c.nTrain(), c.nTest(), c.nProbes(), c.hidden(), c.epochs(), c.batch(), c.lr(), tolerance,
                        c.overheadSteps());
            }
            try {
                Map<String, Object> result = new NoisyLabelsExperiment(c, System.out).run();
                Path md = NoisyLabelsReport.write(result, json, String.format(
                        "curvewatch experiment noisy-labels --seed %d --noise %s --size %s --json %s", seed, noise, size, json));
                System.out.println("wrote " + json + " and " + md);
                return result.get("after") == null ? 1 : 0;
            } catch (IOException e) {
                System.err.println("curvewatch experiment noisy-labels: " + e.getMessage());
                return 2;
            }
        }
    }

    /** Memorization gap per refresh: clean control vs flipped labels or canaries from the middle epoch on. */
    @Command(name = "memorization-gap", mixinStandardHelpOptions = true,
            description = "Two runs of equal length (clean control; noise or canaries injected mid-run): calibrated edit "
                    + "and memorization gap at every refresh, alert threshold relative to the run's own baseline.")
    public static final class MemorizationGap implements Callable<Integer> {
        enum Injected { noise, canaries }

        @Option(names = "--seed", defaultValue = "1")
        long seed;

        @Option(names = "--inject", defaultValue = "noise",
                description = "noise (the noisy-label MLP) or canaries (the character LM) (default ${DEFAULT-VALUE}).")
        Injected inject;

        @Option(names = "--noise", defaultValue = "0.1")
        double noise;

        @Option(names = "--size", defaultValue = "full", description = "full (512-wide, 120 epochs) or small (CI).")
        String size;

        @Option(names = "--json", defaultValue = "memorization-gap.json")
        Path json;

        @Override
        public Integer call() {
            boolean small = "small".equals(size);
            try {
                Map<String, Object> result;
                if (inject == Injected.canaries) {
                    CanariesExperiment.Config c = small ? CanariesExperiment.Config.small(seed)
                            : CanariesExperiment.Config.full(seed);
                    result = new CanariesExperiment(c, System.out).gap(small ? CanariesExperiment.GAP_REFRESH_SMALL
                            : CanariesExperiment.GAP_REFRESH_FULL, CanariesExperiment.GAP_BASELINE_REFRESHES);
                } else {
                    MemorizationGapExperiment.Config c = small ? MemorizationGapExperiment.Config.small(seed, noise)
                            : MemorizationGapExperiment.Config.full(seed, noise);
                    result = new MemorizationGapExperiment(c, System.out).run();
                }
                Path md = GapReport.write(result, json, String.format(
                        "curvewatch experiment memorization-gap --inject %s --seed %d --noise %s --size %s --json %s",
                        inject, seed, noise, size, json));
                System.out.println("wrote " + json + " and " + md);
                return 0;
            } catch (IOException e) {
                System.err.println("curvewatch experiment memorization-gap: " + e.getMessage());
                return 2;
            }
        }
    }

    /** Context-window character LM reciting inserted canaries; calibrated edit; recitation and perplexity. */
    @Command(name = "canaries", mixinStandardHelpOptions = true,
            description = "Character MLP LM on generated text with canaries; K-FAC edit of the hidden layer chosen and "
                    + "calibrated on held-out text (perplexity +5%% budget); strict/loose recitation and perplexity.")
    public static final class Canaries implements Callable<Integer> {
        @Option(names = "--seed", defaultValue = "1")
        long seed;

        @Option(names = "--size", defaultValue = "full", description = "full (20 canaries x 33, 512-wide) or small (CI).")
        String size;

        @Option(names = "--json", defaultValue = "canaries.json")
        Path json;

        @Override
        public Integer call() {
            CanariesExperiment.Config c = "small".equals(size)
                    ? CanariesExperiment.Config.small(seed) : CanariesExperiment.Config.full(seed);
            try {
                Map<String, Object> result = new CanariesExperiment(c, System.out).run();
                Path md = CanariesReport.write(result, json, String.format(
                        "curvewatch experiment canaries --seed %d --size %s --json %s", seed, size, json));
                System.out.println("wrote " + json + " and " + md);
                return result.get("after") == null ? 1 : 0;
            } catch (IOException e) {
                System.err.println("curvewatch experiment canaries: " + e.getMessage());
                return 2;
            }
        }
    }
}
