"""dlprobe: a lab for the empirical study of why deep learning works."""

__version__ = "0.1.0"


class DlprobeError(ValueError):
    """Bad input from a user: the message says what was wrong and what is allowed."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``resume`` is the command that continues it."""

    def __init__(self, resume: str):
        super().__init__(resume)
        self.resume = resume
