"""docs/design.md stays true to the code: it names every Hooks and Acts field, every FFN kind and every analysis
module."""
import dataclasses
from pathlib import Path

import pytest

from ffnkv.config import FFN_KINDS
from ffnkv.hooks import Acts, Hooks

DESIGN = (Path(__file__).resolve().parents[1] / "docs" / "design.md").read_text()


@pytest.mark.parametrize("cls", [Hooks, Acts])
def test_design_names_every_field(cls):
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in DESIGN]
    assert not missing, f"docs/design.md does not mention {cls.__name__} fields {missing}"


def test_design_names_every_ffn_kind():
    assert all(f"`{kind}`" in DESIGN for kind in FFN_KINDS)


def test_design_names_every_analysis_module():
    modules = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "analysis").glob("*.py")
                     if p.stem != "__init__")
    missing = [m for m in modules if m not in DESIGN]
    assert not missing, f"docs/design.md's Analyses section does not mention {missing}"
