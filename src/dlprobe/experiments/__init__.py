"""One module per experiment id; see ``dlprobe.experiments.base`` for what each provides."""
