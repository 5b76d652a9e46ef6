"""Training of one model or a population of models; returns history records.

from dlprobe.data import load_dataset
from dlprobe.models import MLP
from dlprobe.train import PerModel, Population, TrainConfig, train_population

data = load_dataset("mnist1d")
pop = Population(lambda: MLP([40, 64, 64, 10], "relu"), seeds=range(8))
history = train_population(pop, data, TrainConfig(optimizer="adam", lr=1e-3, epochs=20))
history.final("test_accuracy")        # one value per model

# A fresh population, each model until its train loss is below 0.01 or for 200 epochs:
pop = Population(lambda: MLP([40, 64, 64, 10], "relu"), seeds=range(8))
history = train_population(pop, data, TrainConfig(epochs=200, stop_below_train_loss=0.01))
history.stopped_at_epoch, history.steps_taken, history.reached_target  # one per model

# A learning-rate sweep as one population: model k trains with lr[k] (also weight_decay,
# momentum, label_noise, train_subsets), as it would alone:
pop = Population(lambda: MLP([40, 64, 64, 10], "relu"), seeds=[0, 0, 0])
train_population(pop, data, TrainConfig(epochs=20), per_model=PerModel(lr=[1e-3, 3e-3, 1e-2]))

# Any map-style torch Dataset of (x, y), e.g. TensorDataset(x, y), is loaded into memory:
train_population(pop, TensorDataset(x, y), cfg, test_data=TensorDataset(x_test, y_test))
"""

from dlprobe.train.checkpoint import Checkpoint, atomic_torch_save, load_checkpoint_file
from dlprobe.train.config import OPTIMIZERS, SCHEDULES, TrainConfig, lr_factor, make_optimizer
from dlprobe.train.evaluation import default_loss, evaluate_population, full_batch_grad_norms
from dlprobe.train.history import History
from dlprobe.train.optim import PerModelOptimizer
from dlprobe.train.per_model import PerModel
from dlprobe.train.plain import train_plain
from dlprobe.train.population import Population
from dlprobe.train.trainer import train_population

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Checkpoint",
    "History",
    "PerModel",
    "PerModelOptimizer",
    "Population",
    "TrainConfig",
    "atomic_torch_save",
    "default_loss",
    "evaluate_population",
    "full_batch_grad_norms",
    "load_checkpoint_file",
    "lr_factor",
    "make_optimizer",
    "train_plain",
    "train_population",
]
