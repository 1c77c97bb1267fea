"""The README's API example is examples/quickstart.py verbatim, and it runs to the end (slow tier, timed)."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The API in one example\n", 1)[1]
    match = re.match(r"\s*```python\n(.*?)```\n", section, re.DOTALL)
    assert match, "the README's 'The API in one example' section must open with a ```python block"
    return match.group(1)


def test_readme_example_is_the_quickstart_file():
    assert _readme_example() == (REPO / "examples" / "quickstart.py").read_text()


@pytest.mark.slow
def test_quickstart_runs_within_a_generous_bound():
    """The README states the time benchmarks/quickstart.py measured (budget 60 s on 2 cores); a shared machine can
    be several times slower, so this only bounds it at 3× the budget and prints the time it took."""
    pytest.importorskip("gguf", reason="the quickstart loads SmolLM2 from its GGUF file ('models' extra)")
    from benchmarks import quickstart
    from ffnkv.errors import FfnkvError
    from ffnkv.io.packaged import model_path

    try:
        model_path("smollm2")
    except FfnkvError as missing:
        pytest.skip(str(missing))
    run = quickstart.run_once(timeout=600)
    print(f"examples/quickstart.py: {run['seconds']:.1f} s (load average {run['load_before']:.1f})")
    assert "P(Paris)" in run["stdout"] and run["stdout"].count("head ") == 3
    assert run["seconds"] <= 3 * 60
