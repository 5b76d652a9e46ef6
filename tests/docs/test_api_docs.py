"""The API reference is generated from the docstrings and documents every exported probe."""

import re
from pathlib import Path

import pdoc
import pdoc.render

from dlprobe import measure

ROOT = Path(__file__).resolve().parents[2]


def test_pdoc_documents_every_name_in_measure_all(tmp_path):
    # the options of `make docs`
    pdoc.render.configure(docformat="google", show_source=False, search=False)
    pdoc.pdoc("dlprobe.measure", output_directory=tmp_path)
    page = (tmp_path / "dlprobe" / "measure.html").read_text()
    missing = [name for name in measure.__all__ if f'id="{name}"' not in page]
    assert missing == []
    # each function's docstring made it, not just its name: every one says what it returns
    assert page.count("Returns:") + page.count(">Returns<") >= 10
    assert "Worked example: the curvature of a ResNet-18" in page


def test_makefile_target_and_committed_reference_exist():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^docs:", makefile, re.M)
    assert "pdoc dlprobe.measure --docformat google --no-show-source --no-search" in makefile
    assert (ROOT / "docs" / "api" / "dlprobe" / "measure.html").is_file()


def _small_resnet_stand_in(num_classes: int):
    """Same interface as torchvision's resnet18 (a final layer named fc), 200x smaller."""
    from collections import OrderedDict

    from torch import nn

    layers = OrderedDict(
        conv=nn.Conv2d(3, 4, 3, stride=4),
        bn=nn.BatchNorm2d(4),
        relu=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1),
        flat=nn.Flatten(),
        fc=nn.Linear(4, num_classes),
    )
    return nn.Sequential(layers)


def test_worked_example_runs(monkeypatch, capsys):
    """The docstring's ResNet-18 example, with a small stand-in for the ResNet so the test
    takes a second: every call in it is valid API and the numbers come out finite."""
    import torchvision.models

    (code,) = re.findall(r"```python\n(.*?)```", measure.__doc__, re.S)
    monkeypatch.setattr(torchvision.models, "resnet18", _small_resnet_stand_in)
    scope: dict = {}
    exec(compile(code, "measure-example", "exec"), scope)
    assert scope["eigenvalues"].shape == (2,) and scope["eigenvectors"].shape[1] == 2
    assert scope["last_layer"].shape == (1,)
    # interlacing: a principal block's top eigenvalue is at most the whole Hessian's
    assert scope["last_layer"][0] <= scope["eigenvalues"][0] * (1 + 1e-3) + 1e-6
    assert scope["density"].isfinite().all() and "lambda_max" in capsys.readouterr().out
