"""The README's measured numbers, rendered from a recorded `make run` (never retyped).

    make run                                          # writes runs/class/results.json
    cp runs/class/results.json benchmarks/results/class_run.json
    python benchmarks/readme_numbers.py --write       # rewrites the README's notebook table

The README's table of notebooks sits between the two MARKERS; each row's last column is a template of
recorded names (`{r[name]}` a recorded value, `{seconds}` the notebook's run time). A test checks that
the README holds exactly what this script renders, so a number in the README is a number a run recorded.
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECORDED = ROOT / "benchmarks" / "results" / "class_run.json"
MARKERS = ("<!-- notebook table: rendered by benchmarks/readme_numbers.py from benchmarks/results/class_run.json -->",
           "<!-- end of the rendered notebook table -->")
HEADER = ("| notebook | paper | `class` on a 2-core CPU (recorded by `make run`) |", "|---|---|---|")

ROWS = {
    "00_start_here": ("the tour: environment doctor, profiles, widgets, data, exercises",
                      "{time}"),
    "01_knowledge_distillation": (
        "Hinton, Vinyals, Dean 2015",
        "{time}: KD - CE on digits {r[digits_kd_minus_ce]:+.2f} [95% CI {r[digits_kd_minus_ce_ci][0]:+.2f}, "
        "{r[digits_kd_minus_ce_ci][1]:+.2f}] ({r[num_seeds]} seeds); MNIST-1D {r[mnist1d_kd_minus_ce]:+.2f} "
        "[{r[mnist1d_kd_minus_ce_ci][0]:+.2f}, {r[mnist1d_kd_minus_ce_ci][1]:+.2f}]"),
    "02_maml": (
        "Finn, Abbeel, Levine 2017",
        "{time}: glyphs 5-way 1-shot {r[glyphs_1shot_acc]:.1f} ± {r[glyphs_1shot_ci]:.1f}, 5-shot "
        "{r[glyphs_5shot_acc]:.1f} ± {r[glyphs_5shot_ci]:.1f} ({r[test_episodes]} test episodes)"),
    "03_metadistil": (
        "Zhou, Xu, McAuley 2022 (MetaDistil)",
        "{time}: MetaDistil - KD (90% of the data) {r[meta_minus_kd90]:+.2f} [{r[meta_minus_kd90_ci][0]:+.2f}, "
        "{r[meta_minus_kd90_ci][1]:+.2f}] ({r[num_seeds]} seeds); a MetaDistil step costs "
        "{r[peak_memory_ratio]:.1f}x the peak memory of a KD step"),
    "04_metadistiller": (
        "Liu et al. 2020 (MetaDistiller)",
        "{time}: MD - SD on the final exit {r[md_minus_sd_final]:+.2f} [{r[md_minus_sd_final_ci][0]:+.2f}, "
        "{r[md_minus_sd_final_ci][1]:+.2f}] ({r[num_seeds]} seeds); MD - DSN {r[md_minus_dsn_final]:+.2f} "
        "[{r[md_minus_dsn_final_ci][0]:+.2f}, {r[md_minus_dsn_final_ci][1]:+.2f}]"),
    "05_mmkd": (
        "Zhang, Chen, Wang 2023 (MMKD)",
        "{time}: MMKD - AVER {r[mmkd_minus_aver]:+.2f} [{r[mmkd_minus_aver_ci][0]:+.2f}, "
        "{r[mmkd_minus_aver_ci][1]:+.2f}], MMKD - CA-MKD {r[mmkd_minus_camkd]:+.2f} "
        "[{r[mmkd_minus_camkd_ci][0]:+.2f}, {r[mmkd_minus_camkd_ci][1]:+.2f}] ({r[num_seeds]} seeds); "
        "MMKD - best teacher alone {r[mmkd_minus_best_teacher_alone]:+.2f}"),
    "06_tsmd": (
        "Wu et al. 2023 (TSMD)",
        "{time}: glyphs 5-way, TSMD (ours) - MAML student: 1-shot {r[glyphs_1shot_ours_minus_student]:+.1f} "
        "[{r[glyphs_1shot_ours_minus_student_ci][0]:+.1f}, {r[glyphs_1shot_ours_minus_student_ci][1]:+.1f}], "
        "5-shot {r[glyphs_5shot_ours_minus_student]:+.1f} [{r[glyphs_5shot_ours_minus_student_ci][0]:+.1f}, "
        "{r[glyphs_5shot_ours_minus_student_ci][1]:+.1f}]; oracle (big model) - student 1-shot "
        "{r[glyphs_1shot_oracle_minus_student]:+.1f} ({r[num_seeds]} seeds x {r[test_episodes_per_seed]} episodes)"),
    "07_meta_feature_distillation": (
        "the 2025 preprint (hybrid feature KD + MAML phase)",
        "{time}: feature distillation - baseline {r[diff_fd_minus_baseline][0]:+.2f} "
        "[{r[diff_fd_minus_baseline][1]:+.2f}, {r[diff_fd_minus_baseline][2]:+.2f}]; the adaptation phase - a plain "
        "extra SGD step {r[diff_fd_plus_adaptation_minus_fd_plus_plain_extra_step_final][0]:+.2f} "
        "[{r[diff_fd_plus_adaptation_minus_fd_plus_plain_extra_step_final][1]:+.2f}, "
        "{r[diff_fd_plus_adaptation_minus_fd_plus_plain_extra_step_final][2]:+.2f}] ({r[num_seeds]} seeds)"),
    "08_comparison": (
        "every method on one benchmark",
        "{time}: same student, data, budget and teacher, {r[num_seeds]} seeds; each method - KD: "
        "DKD {r[minus_kd][DKD]:+.2f}, CTKD {r[minus_kd][CTKD]:+.2f}, MetaDistil {r[minus_kd][MetaDistil]:+.2f}, MMKD {r[minus_kd][MMKD]:+.2f}, FD + adaptation "
        "{r[minus_kd][FD + adaptation]:+.2f}, MetaDistiller {r[minus_kd][MetaDistiller]:+.2f}, CE "
        "{r[minus_kd][CE]:+.2f}"),
    "09_learning_alpha_and_temperature": (
        "Li et al. 2023 (CTKD) and a meta-gradient on alpha and T",
        "{time}: against the hand-set ALPHA 0.9, T 4: CTKD {r[ctkd_minus_fixed]:+.2f} [{r[ctkd_minus_fixed_ci][0]:+.2f}, "
        "{r[ctkd_minus_fixed_ci][1]:+.2f}], meta-gradient {r[meta_minus_fixed]:+.2f} [{r[meta_minus_fixed_ci][0]:+.2f}, "
        "{r[meta_minus_fixed_ci][1]:+.2f}] ({r[num_seeds]} seeds); the 15-point grid spans {r[grid_spread]:.2f} points"),
}


def _duration(seconds):
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def render(recorded):
    """The README's notebook table from a `results.json` of `make run`."""
    lines = [MARKERS[0], *HEADER]
    for stem, (paper, template) in ROWS.items():
        run = recorded["notebooks"].get(stem)
        if run is None or run["status"] != "ok":
            cell = "not recorded" if run is None else f"{run['status']} in the recorded run"
        else:
            cell = template.format(r=run["results"], time=_duration(run["seconds"]))
        lines.append(f"| `{stem}` | {paper} | {cell} |")
    lines.append(MARKERS[1])
    return "\n".join(lines)


def rendered_block(readme_text):
    start, end = readme_text.index(MARKERS[0]), readme_text.index(MARKERS[1]) + len(MARKERS[1])
    return readme_text[start:end]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recorded", type=Path, default=RECORDED)
    parser.add_argument("--write", action="store_true", help="rewrite the README's table (else print it)")
    args = parser.parse_args(argv)
    table = render(json.loads(args.recorded.read_text()))
    if not args.write:
        print(table)
        return 0
    text = README.read_text()
    README.write_text(text.replace(rendered_block(text), table))
    print(f"README.md: notebook table rendered from {args.recorded}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
