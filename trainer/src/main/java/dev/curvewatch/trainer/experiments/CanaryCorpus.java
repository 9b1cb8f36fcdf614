package dev.curvewatch.trainer.experiments;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * The canaries experiment's generated text (DESIGN §6): sentences over a random lexicon with
 * canaries ({@code canaryNN=<secret>. }) inserted at random sentence boundaries, the same
 * sentences without them, held-out text from the same lexicon, and their one-hot windows.
 */
final class CanaryCorpus {
    static final String ALPHABET = "abcdefghijklmnopqrstuvwxyz .=0123456789";
    static final int V = ALPHABET.length();

    /** One-hot windows and next-character targets of a text. */
    record Positions(int n, float[] x, int[] y, boolean[] canary) {
    }

    /**
     * The generated text: training text with the canaries inserted at random sentence
     * boundaries, the same sentences without them, and held-out text from the same lexicon.
     */
    record Text(String train, String clean, List<int[]> canarySpans, String[] prefixes, String[] secrets,
                String heldOut, int sentences) {
    }

    private final CanariesExperiment.Config config;

    CanaryCorpus(CanariesExperiment.Config config) {
        this.config = config;
    }

    Text text() {
        CanariesExperiment.Config c = config;
        Random random = new Random(c.seed());
        List<String> lexicon = new ArrayList<>();
        for (int i = 0; i < 300; i++) {
            int len = 2 + random.nextInt(6);
            StringBuilder w = new StringBuilder();
            for (int k = 0; k < len; k++) {
                w.append((char) ('a' + random.nextInt(26)));
            }
            lexicon.add(w.toString());
        }
        String[] secrets = new String[c.canaries()];
        String[] prefixes = new String[c.canaries()];
        String secretChars = "abcdefghijklmnopqrstuvwxyz0123456789";
        for (int k = 0; k < c.canaries(); k++) {
            StringBuilder s = new StringBuilder();
            for (int i = 0; i < c.secretLength(); i++) {
                s.append(secretChars.charAt(random.nextInt(secretChars.length())));
            }
            secrets[k] = s.toString();
            prefixes[k] = String.format("canary%02d=", k);
        }
        // training text: sentences with canaries inserted at random sentence boundaries
        List<String> insertions = new ArrayList<>();
        for (int k = 0; k < c.canaries(); k++) {
            for (int r = 0; r < c.repeats(); r++) {
                insertions.add(prefixes[k] + secrets[k] + ". ");
            }
        }
        java.util.Collections.shuffle(insertions, random);
        StringBuilder train = new StringBuilder(" ".repeat(c.context()));
        StringBuilder clean = new StringBuilder(" ".repeat(c.context()));
        List<int[]> canarySpans = new ArrayList<>();
        int sentences = 0;
        int inserted = 0;
        while (train.length() < c.corpusChars() || inserted < insertions.size()) {
            String sentence = sentence(lexicon, random);
            train.append(sentence);
            clean.append(sentence);
            sentences++;
            if (inserted < insertions.size() && random.nextDouble() < 0.3) {
                String ins = insertions.get(inserted++);
                int secretStart = train.length() + prefixes[0].length();
                canarySpans.add(new int[] {secretStart, secretStart + c.secretLength()});
                train.append(ins);
            }
        }
        StringBuilder held = new StringBuilder(" ".repeat(c.context()));
        while (held.length() < c.heldOutChars()) {
            held.append(sentence(lexicon, random));
        }
        return new Text(train.toString(), clean.toString(), canarySpans, prefixes, secrets, held.toString(),
                sentences);
    }

    private static String sentence(List<String> lexicon, Random random) {
        int words = 4 + random.nextInt(8);
        StringBuilder s = new StringBuilder();
        int prev = random.nextInt(lexicon.size());
        for (int i = 0; i < words; i++) {
            // Zipf-like, with a weak bigram preference so the text has learnable structure
            int idx = random.nextDouble() < 0.5 ? (prev * 7 + 3) % lexicon.size()
                    : (int) Math.min(lexicon.size() - 1, Math.floor(Math.exp(random.nextDouble() * Math.log(lexicon.size()))));
            s.append(lexicon.get(idx)).append(i == words - 1 ? ". " : " ");
            prev = idx;
        }
        return s.toString();
    }

    Positions positions(String text, List<int[]> canarySpans) {
        int k = config.context();
        int n = text.length() - k;
        float[] x = new float[n * k * V];
        int[] y = new int[n];
        boolean[] canary = new boolean[n];
        for (int p = 0; p < n; p++) {
            for (int j = 0; j < k; j++) {
                x[(p * k + j) * V + ALPHABET.indexOf(text.charAt(p + j))] = 1f;
            }
            y[p] = ALPHABET.indexOf(text.charAt(p + k));
        }
        for (int[] span : canarySpans) {
            for (int t = span[0]; t < span[1]; t++) {
                canary[t - k] = true; // position p predicts text[p + k]
            }
        }
        return new Positions(n, x, y, canary);
    }

}
