"""The kit's look: one colour-blind-safe palette, set by kdlab.setup; LivePlot in words a student reads."""
import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest

from kdlab import viz
from kdlab.train.history import History


@pytest.fixture
def default_style():
    """Start from matplotlib's defaults; put the caller's style back after."""
    saved = mpl.rcParams.copy()
    mpl.rcdefaults()
    yield
    mpl.rcParams.update(saved)


def history(epochs=6):
    rng = np.random.default_rng(0)
    return History([{"epoch": e, "loss": 2.0 / e, "kd": 1.0 / e, "ce": 1.5 / e,
                     "train_acc": 50 + 5 * e + rng.random(), "test_acc": 48 + 5 * e} for e in range(1, epochs + 1)])


def test_palette_is_seaborns_colorblind_palette():
    seaborn = pytest.importorskip("seaborn")
    assert list(viz.PALETTE) == seaborn.color_palette("colorblind").as_hex()
    assert len(set(viz.PALETTE)) == 10
    assert len({viz.TEACHER, viz.KD, viz.META, viz.STUDENT, viz.CE}) == 5, "one colour per role"


def test_use_kit_style_sets_the_colour_cycle_and_readable_fonts(default_style):
    assert mpl.rcParams["axes.prop_cycle"].by_key()["color"][0] != viz.PALETTE[0]
    viz.use_kit_style()
    assert mpl.rcParams["axes.prop_cycle"].by_key()["color"] == list(viz.PALETTE)
    assert mpl.rcParams["legend.fontsize"] == 9
    fig, ax = plt.subplots()
    (line,) = ax.plot([0, 1])
    assert mpl.colors.to_hex(line.get_color()) == viz.PALETTE[0], '"C0" is the palette\'s first colour'
    plt.close(fig)


def test_setup_applies_the_kit_style(default_style, tmp_path):
    import kdlab

    kdlab.setup("smoke", quiet=True, data_root=tmp_path)
    assert mpl.rcParams["axes.prop_cycle"].by_key()["color"] == list(viz.PALETTE)


@pytest.mark.parametrize("key,name", [("train_acc", "train accuracy (%)"), ("test_acc", "test accuracy (%)"),
                                      ("loss", "training loss"), ("kd", "distillation (KD) term"),
                                      ("test_acc_exit2", "test accuracy of exit2 (%)"),
                                      ("some_new_column", "some new column")])
def test_display_names_are_words(key, name):
    assert viz.display_name(key) == name


def test_group_labels_name_the_quantity_and_its_unit():
    assert viz.group_label(("train_acc", "test_acc")) == ("accuracy", "accuracy (%)")
    assert viz.group_label(("loss",))[1] == "loss (epoch mean)"
    assert viz.group_label(("loss", "kd", "ce"))[0] == "training loss and its terms"
    assert viz.group_label(("lr",)) == ("learning rate", "learning rate")


def legend_outside_the_axes(fig, ax):
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    axes = ax.get_window_extent()
    return not legend.overlaps(axes)


@pytest.mark.parametrize("groups", [(("loss",), ("train_acc", "test_acc")),
                                    (("loss", "kd", "ce"), ("train_acc", "test_acc"))])
def test_live_plot_axes_have_titles_labels_and_readable_legends(groups):
    fig = viz.LivePlot(*groups, title="teacher")._draw(history())
    try:
        assert fig.get_suptitle() == "teacher"
        for ax, keys in zip(fig.axes, groups):
            assert ax.get_title() and ax.get_xlabel() == "epoch" and ax.get_ylabel()
            if len(keys) == 1:
                assert ax.get_legend() is None and ax.get_title() == viz.display_name(keys[0])
                continue
            texts = [t.get_text() for t in ax.get_legend().get_texts()]
            assert texts == [viz.display_name(k) for k in keys]
            assert not any("_" in t for t in texts), "no raw History keys in a legend"
            assert ax.get_legend().get_texts()[0].get_fontsize() >= 8
            assert len({line.get_linestyle() for line in ax.lines}) == len(keys), "overlapping lines stay apart"
            assert legend_outside_the_axes(fig, ax)
    finally:
        plt.close(fig)


def test_paired_dots_keeps_its_legend_off_the_dots():
    fig, ax = plt.subplots(figsize=(5, 3))
    viz.paired_dots(ax, {"CE": [80, 81, 79], "KD": [83, 82, 84]})
    fig.tight_layout()
    try:
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["one seed", "mean over seeds"]
        assert legend_outside_the_axes(fig, ax)
    finally:
        plt.close(fig)
