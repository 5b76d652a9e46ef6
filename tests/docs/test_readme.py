"""The README promises files, commands and experiment ids: each must exist."""

import re
from pathlib import Path

from dlprobe.experiments.kit import SUITES, registry

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_relative_link_and_image_exists():
    targets = re.findall(r"\]\(([^)#]+)\)", README)
    local = [t for t in targets if "://" not in t]
    assert local, "the README links its demo figures and benchmark results"
    missing = [t for t in local if not (ROOT / t).is_file()]
    assert missing == []


def test_every_dlprobe_run_in_the_readme_names_a_real_experiment_or_suite():
    ids = set(registry()) | {s.id for s in SUITES}
    named = re.findall(r"dlprobe run ([a-z0-9-]+)", README)
    assert named
    assert sorted(set(named) - ids) == []


def test_makefile_has_the_two_commands_the_readme_promises():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.M), target
