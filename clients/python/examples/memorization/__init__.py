"""The paper's two experiments on real transformers (issue 12), offline and live: K-FAC factors from
sampled labels, keep-mass edits of one or several layers, the memorization scores and the run-level
alarm, canaries in a causal LM on Debian's fortunes, noisy labels on all-MiniLM-L6-v2."""
