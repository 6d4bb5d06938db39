"""Train (or find) every pretrained teacher of the `class` profile in the kit's teacher cache, before a timing run.

    python benchmarks/warm_teachers.py

A before/after benchmark (`class_before_after.py`) times each notebook as a student finds it the second time:
its teachers already in `data/cache/teachers/`. This trains the ones a change of the cache's key would otherwise
leave to the first timed run: notebook 01's digits and MNIST-1D teachers (shared with 03 and 09), 05's zoo, 07's
teacher and 08's benchmark teachers, with the notebooks' own `class` settings. It prints one line per teacher.
"""
from kdlab import benchmark
from kdlab.data import load
from kdlab.lessons import feature_meta, mmkd_teachers
from kdlab.models import MLP, SmallCNN
from kdlab.models.cnn1d import CNN1D
from kdlab.teachers import trained_teacher

DIGITS_TEACHER = dict(epochs=150, lr=0.01, batch_size=64)                                            # 01, 03, 09
MNIST1D_TEACHER = dict(epochs=60, lr=1e-2, batch_size=100, optimizer="adam", weight_decay=0.0, schedule=None)  # 01
FEATURE_TEACHER = dict(name="smallcnn16", width=16, epochs=20, lr=0.05, batch_size=64, seed=0)        # 07


def main():
    digits = load("digits", train_size=300, seed=0)
    trained_teacher(lambda: MLP(64, hidden=(256, 256), num_classes=10), digits, seed=0, **DIGITS_TEACHER)
    trained_teacher(lambda: CNN1D(num_classes=10), load("mnist1d"), seed=0, **MNIST1D_TEACHER)
    mmkd_teachers.teacher_zoo(digits, {n: mmkd_teachers.TEACHER_SPECS[n] for n in ("cnn", "mlp", "short", "noisy")})
    feature_meta.cached_teacher(load("digits", seed=0), FEATURE_TEACHER,
                                make_model=lambda: SmallCNN(width=FEATURE_TEACHER["width"]))
    benchmark.load_benchmark(benchmark.Budget(epochs=60), student_width=8)


if __name__ == "__main__":
    main()
