"""Character-level language modelling on Debian's fortunes quotes: a small Hugging Face-style
causal transformer (model.py) and the corpus, batches and canaries (fortunes.py), shared by the
examples, the client's tests and the transformer experiments."""
