"""benchmarks/race_floor.py's arithmetic: the race's CPU-seconds, its floor on W workers, what stacking saves."""
from .benchmark_scripts import load_script


def test_the_floor_is_every_runs_seconds_shared_by_the_workers():
    race_floor = load_script("race_floor")
    seconds = {"CE": 1.0, "MetaDistil": 9.0}                      # per seed: 10 s, so 80 CPU-seconds for 8 seeds
    kd_rows = {"CE": (8.0, 5.0, 0.2), "KD": (10.0, 4.0, 0.0)}     # stacking saves 3 + 6 = 9 CPU-seconds
    text = race_floor.report(seconds, 2, kd_rows, (0.14, 0.11), [(0.5,), (0.6,)], None, [0.71, 0.72])
    assert "**80 CPU-seconds**" in text and "2 workers: **40 s**" in text
    assert "| CE | 1.00 | 10 % |" in text and "| MetaDistil | 9.00 | 90 % |" in text
    assert "| KD | 10.00 | 4.00 | 2.50x | 0.00 |" in text
    assert "saves 9.0 CPU-seconds of the 80, 4.5 s of the floor" in text
    assert "(1.27x)" in text and "speed probe (`speed_probe.py`) 0.71 s before, 0.72 s after" in text
