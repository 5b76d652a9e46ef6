"""Figures to files and self-contained HTML reports of one run or a suite."""
