package dev.curvewatch.trainer.experiments;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

class RecentExamplesTest {

    @Test
    void recentExamplesAreTheLatestDistinctOnes() {
        RecentExamples recent = new RecentExamples(3);
        recent.add(new int[] {1, 2, 3});
        recent.add(new int[] {2, 9});
        assertArrayEquals(new int[] {2, 3, 9}, recent.latest(10), "capacity 3: the three most recent, by index");
        assertArrayEquals(new int[] {2, 9}, recent.latest(2));
        RecentExamples big = new RecentExamples(100);
        big.add(new int[] {5, 5, 7});
        assertArrayEquals(new int[] {5, 7}, big.latest(100), "each example once");
        assertArrayEquals(new int[0], new RecentExamples(4).latest(4));
    }
}
