"""The experiment kit: what one experiment file needs besides the library.

An experiment is one module with a commented frozen ``Config`` (its defaults are the quick
profile; training settings in a nested ``TrainConfig``), ``PROFILES`` as small override
dicts, ``run(cfg, ctx)``, ``figures(results)`` and ``notes(results)``, and an
``EXPERIMENT = Experiment(...)`` that registers it. docs/adding-an-experiment.md walks
through one.
"""

from dlprobe.config import (
    Bound,
    Fraction,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Seed,
    one_of,
    require,
)
from dlprobe.data import DATASETS, FUNCTIONS
from dlprobe.models import ACTIVATIONS

from .context import RunContext
from .experiment import (
    PROFILES,
    SUITES,
    Experiment,
    Notes,
    Part,
    Suite,
    fidelity_row,
    get_experiment,
    get_suite,
    registry,
    suite_ids,
    suite_parts,
)
from .plotting import COLORS, mean_band, new_figure, no_data, style
from .stats import column, finite, group_rows, mean_std, sci, seeds_from, series, spearman
from .sweep import (
    DATASET_SIZES,
    check_batch_sizes,
    check_classifier_fits,
    check_fits,
    check_mlp_fits,
    data_record,
    epochs_for_steps,
    mlp_population,
    mlp_spec,
    model_data_table,
    n_train_of,
    parse_widths,
    probe_examples,
)

# Names a config field can hold, checked with the list of valid ones in the message.
Activation = one_of(ACTIVATIONS, "activation")
DatasetName = one_of(DATASETS, "dataset")
FunctionName = one_of(FUNCTIONS, "function")

__all__ = [
    "Activation",
    "Bound",
    "DatasetName",
    "FunctionName",
    "Seed",
    "COLORS",
    "DATASET_SIZES",
    "PROFILES",
    "SUITES",
    "Experiment",
    "Fraction",
    "NonNegFloat",
    "NonNegInt",
    "Notes",
    "Part",
    "PosFloat",
    "PosInt",
    "RunContext",
    "Suite",
    "check_batch_sizes",
    "check_classifier_fits",
    "check_fits",
    "check_mlp_fits",
    "column",
    "data_record",
    "epochs_for_steps",
    "fidelity_row",
    "finite",
    "get_experiment",
    "get_suite",
    "group_rows",
    "mean_band",
    "mean_std",
    "mlp_population",
    "mlp_spec",
    "model_data_table",
    "n_train_of",
    "new_figure",
    "no_data",
    "one_of",
    "parse_widths",
    "probe_examples",
    "registry",
    "require",
    "sci",
    "seeds_from",
    "series",
    "spearman",
    "style",
    "suite_ids",
    "suite_parts",
]
