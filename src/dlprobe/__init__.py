"""dlprobe: a lab for the empirical study of why deep learning works."""

import warnings

__version__ = "0.1.0"

# PyTorch scripts its forward-mode AD decompositions on first use (jvp, Hessian-vector
# products) and warns that torch.jit.script is deprecated: nothing a user can act on.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)


class DlprobeError(ValueError):
    """Bad input from a user: the message says what was wrong and what is allowed."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``resume`` is the command that continues it."""

    def __init__(self, resume: str):
        super().__init__(resume)
        self.resume = resume
