"""Comparisons of batch sizes: one population per batch size and budget protocol, each
trained, then probed; results read back by protocol and batch size.

A batch-size comparison is only as fair as its budget. Equal optimizer steps give a batch of
8 a few epochs and the full batch thousands; equal epochs do the reverse; either way the
trend can measure training length. ``converged`` (the default) trains every model until its
training loss (or accuracy) meets a common target, with an epoch cap, so what is held equal
is what was reached; ``epochs`` and ``steps`` are the homework's budgets, kept for contrast.
``train_config_for`` is the one place where a budget becomes a batch size's training.

The package's modules: ``protocol`` (budgets, training), ``select`` (which runs count,
trends), ``text`` (report sentences and tables), ``figures``; experiments use them as
``batches.NAME``.
"""

from .figures import (
    NONE_COUNTED,
    batch_grid,
    batch_panel,
    protocol_figure,
)
from .protocol import (
    BUDGET_OWNED,
    PROTOCOL_NAMES,
    PROTOCOLS,
    Budget,
    batch_order,
    check_budget_unset,
    check_sweep,
    model_and_data,
    outcomes,
    split_metrics,
    train_config_for,
    train_one,
    train_sweep,
)
from .select import (
    NO_TREND,
    P_TREND,
    at_batch,
    batch_sizes_of,
    batch_summary,
    by_batch,
    counted,
    counts,
    direction,
    left_out,
    main_runs,
    protocols_of,
    span,
    spearman_p,
    trend,
    trend_text,
)
from .text import (
    critical_point_line,
    gap_line,
    held_equal_lines,
    intro_lines,
    left_out_lines,
    main_label,
    main_trend_lines,
    model_and_data_table,
    protocol_caption,
    protocol_label,
    protocol_lines,
    reached_table,
    standin_row,
    trend_row,
)

__all__ = [
    "BUDGET_OWNED",
    "Budget",
    "NONE_COUNTED",
    "NO_TREND",
    "PROTOCOLS",
    "PROTOCOL_NAMES",
    "P_TREND",
    "at_batch",
    "batch_grid",
    "batch_order",
    "batch_panel",
    "batch_sizes_of",
    "batch_summary",
    "by_batch",
    "check_budget_unset",
    "check_sweep",
    "counted",
    "counts",
    "critical_point_line",
    "direction",
    "gap_line",
    "held_equal_lines",
    "intro_lines",
    "left_out",
    "left_out_lines",
    "main_label",
    "main_runs",
    "main_trend_lines",
    "model_and_data",
    "model_and_data_table",
    "outcomes",
    "protocol_caption",
    "protocol_figure",
    "protocol_label",
    "protocol_lines",
    "protocols_of",
    "reached_table",
    "span",
    "spearman_p",
    "split_metrics",
    "standin_row",
    "train_config_for",
    "train_one",
    "train_sweep",
    "trend",
    "trend_row",
    "trend_text",
]
