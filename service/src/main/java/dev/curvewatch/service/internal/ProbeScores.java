package dev.curvewatch.service.internal;

import java.util.List;

/**
 * Token-weighted probe aggregates (SERVICE-CONTRACT §1): accuracy = Σ accuracy·tokens / Σ tokens,
 * loss = Σ loss·tokens / Σ tokens (log perplexity for an LM), now and under each evaluated
 * candidate. Accuracy only when every probe has one.
 */
record ProbeScores(boolean accuracyMeasured, boolean singleTarget, double accuracyNow, double[] accuracy, double lossNow, double[] loss) {

    /** @param evaluated the candidate indices every probe was evaluated at */
    static ProbeScores of(List<ProbeAnswer.Example> probes, int[] evaluated) {
        boolean measured = probes.stream().allMatch(ProbeAnswer.Example::hasAccuracy);
        boolean single = probes.stream().allMatch(x -> x.tokens() == 1);
        double tokens = 0;
        double accNow = 0;
        double lossNow = 0;
        double[] acc = new double[evaluated.length];
        double[] loss = new double[evaluated.length];
        for (ProbeAnswer.Example x : probes) {
            double w = x.tokens();
            tokens += w;
            lossNow += w * x.lossNow();
            for (int j = 0; j < evaluated.length; j++) {
                loss[j] += w * x.loss()[x.at(evaluated[j])];
            }
            if (measured) {
                accNow += w * x.accuracyNow();
                for (int j = 0; j < evaluated.length; j++) {
                    acc[j] += w * x.accuracy()[x.at(evaluated[j])];
                }
            }
        }
        for (int j = 0; j < evaluated.length; j++) {
            loss[j] /= tokens;
            acc[j] = measured ? acc[j] / tokens : Double.NaN;
        }
        return new ProbeScores(measured, single, measured ? accNow / tokens : Double.NaN, acc, lossNow / tokens, loss);
    }

    double now(Calibration.Mode mode) {
        return mode == Calibration.Mode.ACCURACY ? accuracyNow : lossNow;
    }

    double[] scores(Calibration.Mode mode) {
        return (mode == Calibration.Mode.ACCURACY ? accuracy : loss).clone();
    }

    /** No evaluated candidate changed the probe accuracy (false without accuracy). */
    boolean accuracyUnchanged() {
        if (!accuracyMeasured) {
            return false;
        }
        for (double a : accuracy) {
            if (Math.abs(a - accuracyNow) > 1e-12) {
                return false;
            }
        }
        return true;
    }

    /** No evaluated candidate moved the probe loss by more than {@code by} nats. */
    boolean lossUnchanged(double by) {
        for (double l : loss) {
            if (Math.abs(l - lossNow) > by) {
                return false;
            }
        }
        return true;
    }
}
