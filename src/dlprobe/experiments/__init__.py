"""One module per experiment id; ``dlprobe.experiments.kit`` is what each one builds on
(docs/adding-an-experiment.md walks through adding one)."""
