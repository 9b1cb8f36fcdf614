package dev.curvewatch.bench;

import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.Precision;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * W' = U_G (C ⊙ M) U_Aᵀ for a d x d layer (four fp64 gemms). The "eigenvectors" are random
 * matrices: the cost does not depend on them, and decomposing two 4096 factors in setup would
 * take longer than the benchmark itself.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 1)
@Measurement(iterations = 3)
@Fork(value = 1, jvmArgs = {"-Xmx6g"})
public class EditBenchmark {
    @Param({"4096"})
    int d;

    private CurvatureEdit edit;
    private KeepMassMask mask;
    private double[] w;

    @Setup
    public void setUp() {
        SplittableRandom r = new SplittableRandom(4);
        double[] values = new double[d];
        for (int i = 0; i < d; i++) {
            values[i] = 1.0 / (i + 1);
        }
        Eigenbasis basis = new Eigenbasis(d, values, random(r, d * d), 0, Precision.FLOAT64);
        edit = new CurvatureEdit(basis, basis);
        mask = edit.select(0.6);
        w = random(r, d * d);
    }

    private static double[] random(SplittableRandom r, int n) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
            v[i] = r.nextDouble() * 2 - 1;
        }
        return v;
    }

    @Benchmark
    public double[] apply() {
        return edit.apply(w, mask);
    }
}
