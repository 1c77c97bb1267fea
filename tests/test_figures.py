"""The figures say what they show: edit bars label zeros, show the unedited baseline and n; layer axes have
integer ticks; the tracing panels' labels do not overlap."""
import numpy as np
import pytest

from analysis.tracing import CATEGORIES
from studies.report import edit_figures, knowledge, memories


@pytest.fixture
def figures(monkeypatch):
    """The figures a renderer would save, kept open instead."""
    kept = []
    for module in (edit_figures, knowledge, memories):
        monkeypatch.setattr(module, "save_figure", lambda fig, path, kept=kept: kept.append(fig) or path)
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


def _texts(fig):
    """(text, box on the canvas) of every label drawn."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip()]


def _overlaps(fig):
    boxes = _texts(fig)
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]


def _scores(es):
    return {"ES": es, "PS": 0.5, "NS": 0.9, "S": 0.0, "EM": 0.1, "PM": 0.1, "NM": 0.1, "unrelated_acc": 1.0}


def test_edit_bars_show_zeros_the_unedited_baseline_and_n(figures):
    result = {"n_edits": 3, "n_unrelated": 7, "unedited": _scores(0.0), "rome_single": _scores(1.0),
              "memit": _scores(0.0)}
    edit_figures.plot_scores({"": result}, "edit.png", "edits")
    ax = figures[0].axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0].startswith("unedited") and all("n = 3 edits" in t and "7 unrelated" in t for t in ticks)
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == 3 * len(edit_figures.BARS) and labels.count("0") == 5  # S of each row, ES of two
    assert [p.get_label() for p in ax.get_legend().get_patches()] == list(edit_figures.BARS)


def test_layer_axes_have_integer_ticks(figures):
    memories.curves("agreement.png", "t", "rate", {"agreement": [0.05, 0.04, 0.045, 0.05]},
                    {"shuffled": ([0.01] * 4, [0.005] * 4)})
    fig = figures[0]
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) and np.all(ticks == np.round(ticks))


@pytest.mark.parametrize("layers", [list(range(4)), list(range(0, 30, 2))])
def test_tracing_category_panels_do_not_overlap(figures, layers):
    rng = np.random.default_rng(0)
    avg = {k: {c: {"mean": rng.random(len(layers)).tolist(), "ci": [0.0] * len(layers), "n": 5} for c in CATEGORIES}
           for k in ("resid", "mlp", "attn")} | {"n_facts": 5}
    knowledge.category_heatmaps("tracing_categories.png", avg, ["resid", "mlp", "attn"], layers, "window 10")
    assert _overlaps(figures[0]) == []
