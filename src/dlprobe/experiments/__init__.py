"""One module per experiment id, or a package (``protocol``, ``figures``, ``report``) for the
larger ones; ``dlprobe.experiments.base`` says what each provides."""
