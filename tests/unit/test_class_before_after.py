"""benchmarks/class_before_after.py: its table keeps the notes under it, whole."""
from .benchmark_scripts import load_script


def test_a_rerun_keeps_every_line_of_the_notes_and_replaces_only_its_rows(tmp_path):
    bench = load_script("class_before_after")
    results = tmp_path / "table.md"
    rows = {"01_a": "| 01_a | 10 | 5 | 2.00x | identical | 1.0 -> 1.0 |",
            "02_b": "| 02_b | 20 | 10 | 2.00x | identical | 1.0 -> 1.0 |"}
    bench.write_table(rows, "base1", "cur1", None, results)
    text = results.read_text()
    text = text.rstrip("\n") + "\n- a note that runs\n  over two lines\n- a second note\n"
    results.write_text(text)
    bench.write_table({"02_b": "| 02_b | 20 | 8 | 2.50x | identical | 1.0 -> 1.0 |"}, "base2", "cur2", "new", results)
    after = results.read_text()
    assert "- a note that runs\n  over two lines\n- a second note\n" in after, "a note's second line was lost"
    assert rows["01_a"] in after and "| 02_b | 20 | 8 | 2.50x |" in after and rows["02_b"] not in after
    assert after.rstrip().endswith(": new") and "base base2, current cur2" in after


def test_numbers_that_are_equal_infinities_or_both_missing_are_the_same_and_others_differ():
    bench = load_script("class_before_after")
    base = {"ari": {"AVER": -55.7, "CA-MKD": float("-inf")}, "gap": float("nan"), "acc": 96.01, "run_seconds": 10.0}
    same = {"ari": {"AVER": -55.7, "CA-MKD": float("-inf")}, "gap": float("nan"), "acc": 96.01, "run_seconds": 12.0}
    assert bench.differing(base, same) == [], "an infinity or a timing counted as a difference"
    assert bench.differing(base, dict(same, acc=96.02)) == ["acc"]
    assert bench.differing(base, dict(same, ari={"AVER": -55.7, "CA-MKD": float("inf")})) == ["ari"]
