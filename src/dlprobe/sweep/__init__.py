"""Sweeps: one experiment over a grid or random draws of its settings, on Ray.

``dlprobe sweep sharpness --grid lr=1e-3,1e-2 --grid seed=0..9`` writes one sweep folder::

    runs/sharpness-sweep-YYYYmmdd-HHMMSS/
        sweep.json      experiment, profile, axes, every trial's settings and status
        trials/NNN-lr=0.001-seed=0/   a normal run folder per trial (dlprobe report works)
        results.csv     one row per trial: settings, status, seconds, summary numbers
        report.html     the axes, failures by name, headline numbers against each axis

axes.py parses the axes and expands the trials, plan.py checks them and reads sweep.json
back for ``--resume``, runner.py runs the trials as Ray tasks, table.py writes the table
and the report. Ray is optional (``pip install 'dlprobe[sweep]'``) and imported only when
a sweep runs.
"""

from .command import USAGE, cmd_sweep, report_sweep

__all__ = ["USAGE", "cmd_sweep", "report_sweep"]
