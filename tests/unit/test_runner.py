"""kdlab.runner and kdlab.cli on tiny notebooks (no torch inside, so each runs in seconds).

Each notebook run starts a real `python3` kernel under papermill in a child process.
"""
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

from kdlab import cli, results, runner

PARAMETERS = 'PROFILE = "class"\nLR = 0.1'

RECORDING = """\
import os, sys
from kdlab.results import record
record("python", sys.executable)
record("prefix", sys.prefix)
record("profile", PROFILE)
record("env_profile", os.environ["KDLAB_PROFILE"])
record("lr", LR)
record("accuracy", 0.9134, fmt=".1%")
record("loss", float("nan"))
"""


def write_notebook(path, *cells):
    """A notebook with a `parameters` cell, then `cells`; kernelspec python3 like the course's."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell(PARAMETERS)
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters] + [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(notebook, str(path))
    return path


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Two course notebooks, one that records results and one that fails, run with run_all."""
    folder = tmp_path_factory.mktemp("notebooks")
    write_notebook(folder / "01_records.ipynb", RECORDING)
    write_notebook(folder / "02_fails.ipynb", "print('before the error')",
                   "raise ValueError('ALPHA must be in [0, 1]')", "print('never runs')")
    write_notebook(folder / "notes.ipynb", "raise RuntimeError('not a course notebook: must not run')")
    out = tmp_path_factory.mktemp("runs")
    runs = runner.run_all(folder, out, "smoke", parameters={"LR": 1e-5}, outer_timeout=300, progress=False)
    return folder, out, runs


def test_run_all_runs_the_numbered_notebooks_in_order(course):
    folder, out, runs = course
    assert [run.notebook.name for run in runs] == ["01_records.ipynb", "02_fails.ipynb"]
    assert [run.status for run in runs] == ["ok", "failed"]


def test_kernel_is_this_interpreter_and_parameters_are_injected(course):
    recorded = course[2][0].results
    assert recorded["python"] == sys.executable and recorded["prefix"] == sys.prefix
    assert recorded["profile"] == "smoke" and recorded["env_profile"] == "smoke"
    assert recorded["lr"] == 1e-5 and isinstance(recorded["lr"], float)  # not the string "1e-05"


def test_results_round_trip_through_metadata_and_outputs(course):
    folder, out, runs = course
    executed = out / "01_records.ipynb"
    notebook = nbformat.read(str(executed), as_version=4)
    stored = notebook.metadata["kdlab"]
    assert stored["results"]["accuracy"] == 0.9134 and stored["results"]["loss"] == "nan"
    assert stored["not_finite"] == ["loss"] and stored["formats"] == {"accuracy": ".1%"}
    assert stored["status"] == "ok" and stored["parameters"] == {"PROFILE": "smoke", "LR": 1e-5}
    from_metadata = results.read_results(executed)
    assert from_metadata.keys() == runs[0].results.keys()
    assert from_metadata["accuracy"] == 0.9134 and from_metadata["profile"] == "smoke"
    assert from_metadata["loss"] != from_metadata["loss"]  # NaN came back as a float NaN

    del notebook.metadata["kdlab"]  # as if executed by nbval or JupyterLab: scrape the outputs instead
    scraped_path = out / "scraped.ipynb"
    nbformat.write(notebook, str(scraped_path))
    scraped = results.read_results(scraped_path)
    assert scraped.keys() == from_metadata.keys()
    assert scraped["accuracy"] == 0.9134 and scraped["python"] == sys.executable
    texts = [output["data"]["text/plain"] for cell in notebook.cells for output in cell.get("outputs", [])
             if "data" in output]
    assert "recorded: accuracy = 91.3%" in texts


def test_the_summary_names_the_processor_and_keeps_what_the_caller_measured(course, tmp_path):
    from kdlab.profiling import cpu_model

    path = runner.write_summary(course[2], tmp_path / "results.json", profile="smoke",
                                machine={"speed_probe_seconds": [0.8, 0.9]})
    summary = json.loads(path.read_text())
    assert summary["machine"]["cpu"] == cpu_model() != ""
    assert summary["machine"]["speed_probe_seconds"] == [0.8, 0.9] and summary["machine"]["cpus"] == os.cpu_count()
    assert summary["notebooks"]["01_records"]["results"]["accuracy"] == 0.9134


def test_the_processor_is_read_from_cpuinfo(tmp_path, monkeypatch):
    import builtins

    from kdlab import profiling

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\nflags\t: avx512f\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: real_open(info if p == "/proc/cpuinfo" else p, *a, **k))
    assert profiling.cpu_model() == "AMD EPYC 9B14"


def test_failing_notebook_reports_the_cells_error(course):
    failed = course[2][1]
    assert not failed.ok and failed.error == "ValueError: ALPHA must be in [0, 1]"
    assert failed.output.exists() and failed.log.exists()


def test_format_table_fits_an_80_column_terminal_with_key_numbers_on_their_own_lines(course):
    table = runner.format_table(course[2]).splitlines()
    assert table[0].split() == ["notebook", "status", "time"] and set(table[1]) == {"-"}
    assert table[2].split()[:2] == ["01_records", "ok"] and table[2].endswith(" s")
    assert "    accuracy = 91.3%" in table and "    lr = 1e-05" in table
    fails = next(i for i, line in enumerate(table) if line.startswith("02_fails"))
    assert table[fails].split()[1] == "failed"
    assert table[fails + 1] == "    error: ValueError: ALPHA must be in [0, 1]"
    assert max(len(line) for line in table) <= 80


def test_format_table_wraps_long_values_and_names_within_80_columns():
    long_run = runner.NotebookRun(Path("08_a_comparison_notebook_with_a_long_name.ipynb"), Path("o"), "ok", 512.0,
                                  {"accuracy": {f"method_{i}": 70.0 + i for i in range(12)}, "run_seconds": 512.0},
                                  attempts=2)
    failed = runner.NotebookRun(Path("02_fails.ipynb"), Path("o"), "failed", 3.0,
                                error="Traceback (most recent call last):\nValueError: " + "x" * 400)
    table = runner.format_table([long_run, failed])
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[2].startswith("08_a_comparison_notebook_with_a_long_name") and "ok (2 tries)" in lines[2]
    assert "8.5 min" in lines[2]
    assert lines[3].startswith("    accuracy = {method_0: 70") and lines[4].startswith("        ")
    assert "method_11: 81" in table and "    run_seconds = 512" in lines
    assert "    error: ValueError: xxx" in table and "Traceback" not in table


def processes_with_env(text):
    """Pids of live processes whose environment contains `text` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_hung_notebook_times_out_and_its_kernel_is_killed(tmp_path):
    notebook = write_notebook(tmp_path / "hang.ipynb",
                              "import os, pathlib\nfrom kdlab.results import record\nrecord('started', 1)\n"
                              "pathlib.Path('kernel.pid').write_text(str(os.getpid()))",
                              "import time\ntime.sleep(600)")
    out = tmp_path / "out" / "hang.ipynb"
    run = runner.execute_notebook(notebook, out, profile="smoke", outer_timeout=10)
    assert run.status == "timeout" and "outer timeout of 10 s" in run.error
    assert 10 <= run.seconds < 25
    assert processes_with_env(str(out)) == []  # neither papermill nor its kernel survived
    pid_file = tmp_path / "kernel.pid"
    if pid_file.exists():  # the kernel started in time (it does unless the machine is overloaded)
        assert not alive(int(pid_file.read_text()))
        assert run.results == {"started": 1}  # recorded before the hang, kept after the kill


def alive(pid):
    """True if `pid` runs (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_cell_timeout_is_reported_as_timeout(tmp_path):
    notebook = write_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)")
    run = runner.execute_notebook(notebook, tmp_path / "slow_out.ipynb", profile="smoke", execution_timeout=2,
                                  outer_timeout=120)
    assert run.status == "timeout" and "execution timeout of 2 s" in run.error
    assert run.seconds < 60


def test_only_timeouts_are_retried(tmp_path, monkeypatch):
    notebook = write_notebook(tmp_path / "n.ipynb")
    statuses = iter(["timeout", "failed", "ok"])
    calls = []

    def fake_execute_once(path, out_path, *args, **kwargs):
        calls.append(path)
        return runner.NotebookRun(path, out_path, next(statuses), 1.0)

    monkeypatch.setattr(runner, "_execute_once", fake_execute_once)
    run = runner.execute_notebook(notebook, tmp_path / "o.ipynb", profile="smoke", retries=5)
    assert (run.status, run.attempts, len(calls)) == ("failed", 2, 2)
    statuses = iter(["timeout", "timeout", "ok"])
    assert runner.execute_notebook(notebook, tmp_path / "o.ipynb", profile="smoke", retries=1).status == "timeout"


DYING_KERNEL = """\
import pathlib, runpy, sys
deaths = pathlib.Path(sys.argv.pop(1))
if deaths.read_text().count("x") < int(sys.argv.pop(1)):
    deaths.write_text(deaths.read_text() + "x")
    sys.exit(1)  # dies before it answers, as a kernel does when its port was taken
sys.argv[0] = "ipykernel_launcher"
runpy.run_module("ipykernel_launcher", run_name="__main__")
"""


def dying_kernel(tmp_path, deaths):
    """A kernelspec `dying` (under tmp_path, for JUPYTER_PATH) whose first `deaths` starts exit at once."""
    script, counter = tmp_path / "dying_kernel.py", tmp_path / "deaths.txt"
    script.write_text(DYING_KERNEL)
    counter.write_text("")
    spec = tmp_path / "kernels" / "dying"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(script), str(counter), str(deaths), "-f", "{connection_file}"],
        "display_name": "dying", "language": "python"}))
    return {"JUPYTER_PATH": str(tmp_path)}, counter


def test_a_kernel_that_dies_at_start_is_started_again(tmp_path):
    notebook = write_notebook(tmp_path / "n.ipynb", "from kdlab.results import record\nrecord('lr', LR)")
    env, counter = dying_kernel(tmp_path, deaths=1)
    run = runner.execute_notebook(notebook, tmp_path / "o.ipynb", profile="smoke", kernel="dying", env=env,
                                  execution_timeout=60, outer_timeout=240)
    assert (run.status, run.attempts, run.results, counter.read_text()) == ("ok", 2, {"lr": 0.1}, "x")


def test_a_kernel_that_never_starts_fails_after_the_start_retries_and_a_cell_error_is_not_retried(tmp_path):
    notebook = write_notebook(tmp_path / "n.ipynb", "1 / 0")
    env, counter = dying_kernel(tmp_path, deaths=99)
    run = runner.execute_notebook(notebook, tmp_path / "o.ipynb", profile="smoke", kernel="dying", env=env,
                                  execution_timeout=60, outer_timeout=240)
    assert (run.status, run.attempts) == ("failed", 1 + runner.KERNEL_START_RETRIES)
    assert counter.read_text() == "x" * (1 + runner.KERNEL_START_RETRIES)
    run = runner.execute_notebook(notebook, tmp_path / "o2.ipynb", profile="smoke", retries=0)
    assert (run.status, run.attempts, run.error) == ("failed", 1, "ZeroDivisionError: division by zero")


def test_bad_arguments_stop_before_any_kernel_starts(tmp_path):
    notebook = write_notebook(tmp_path / "n.ipynb")
    with pytest.raises(ValueError, match="PROFILE='fast'"):
        runner.execute_notebook(notebook, tmp_path / "o.ipynb", profile="fast")
    with pytest.raises(ValueError, match="ALPHA=2"):
        runner.execute_notebook(notebook, tmp_path / "o.ipynb", profile="smoke", parameters={"ALPHA": 2})
    with pytest.raises(ValueError, match="an existing .ipynb file"):
        runner.execute_notebook(tmp_path / "missing.ipynb", tmp_path / "o.ipynb", profile="smoke")
    assert not (tmp_path / "o.ipynb").exists()


def test_cli_run_prints_the_table_and_exits_1_when_a_notebook_fails(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "03_fails.ipynb", "1 / 0")
    code = cli.main(["run", "--profile", "smoke", "--out", str(tmp_path / "runs"), "--retries", "0",
                     str(notebook)])
    printed = capsys.readouterr().out
    assert code == 1
    assert any(line.split()[:2] == ["03_fails", "failed"] for line in printed.splitlines())
    assert "    error: ZeroDivisionError: division by zero" in printed
    assert (tmp_path / "runs" / "03_fails.ipynb").exists()


def test_doctor_reports_versions(capsys):
    import torch

    rows = cli.doctor_report()
    items = {item: (value, ok) for item, value, ok in rows}
    assert items["torch"] == (torch.__version__, True)
    assert items["python"][0].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert {"device", "threads", "data root", "datasets", "network", "jupyterlab", "ipywidgets",
            "jupyterlab_widgets", "kernel python3"} <= items.keys()
    assert cli.main(["doctor"]) == 0
    printed = capsys.readouterr().out
    assert "torch" in printed and torch.__version__ in printed
    assert os.cpu_count() is not None and f"{os.cpu_count()} CPU cores" in printed


def test_doctor_reports_the_thread_count_the_notebooks_use(monkeypatch):
    """Not this process's torch default: kdlab.env.default_threads, with where the number comes from."""
    import torch

    from kdlab.env import default_threads

    monkeypatch.delenv("KDLAB_THREADS", raising=False)
    assert "threads" in {item for item, _, _ in cli.doctor_report()}
    _, value, ok = cli._threads_row(torch)
    assert ok and value.startswith(f"{default_threads(None)} torch thread in notebooks (the kit's default")
    monkeypatch.setenv("KDLAB_THREADS", "3")
    _, value, ok = cli._threads_row(torch)
    assert ok and value.startswith("3 torch threads in notebooks (from KDLAB_THREADS)")
    monkeypatch.setenv("KDLAB_THREADS", "many")
    _, value, ok = cli._threads_row(torch)
    assert not ok and "KDLAB_THREADS='many'" in value


def test_papermill_kernels_run_headless_even_when_the_caller_is_not(tmp_path, monkeypatch):
    """Panels must render statically under papermill (widgets can hang nbclient: jupyter/nbclient#312)."""
    for flag in ("KDLAB_HEADLESS", "CI", "NBGRADER_EXECUTION", "PAPERMILL_EXECUTION"):
        monkeypatch.delenv(flag, raising=False)
    path = write_notebook(tmp_path / "01_headless.ipynb",
                          "from kdlab.env import headless\nfrom kdlab.results import record\n"
                          "record('headless', headless())")
    run = runner.execute_notebook(path, tmp_path / "out.ipynb", profile="smoke", outer_timeout=300)
    assert run.status == "ok", run.error
    assert run.results["headless"] is True


SKIPPED_GRAMMAR = """\
import sys
from kdlab import papermill_cli
sys.argv = ["papermill", "--version"]
try:
    papermill_cli.main()
except SystemExit:
    pass
import nbformat
broken = nbformat.v4.new_notebook()
broken.cells.append({"cell_type": "code", "source": "1"})   # no outputs, no metadata: invalid
try:
    nbformat.validate(broken)
    rejected = False
except nbformat.ValidationError:
    rejected = True
nbformat.validate(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]))
print("grammar imported:", sys.modules.get("rfc3987_syntax") is not None, "| broken rejected:", rejected)
"""


def test_the_runners_papermill_skips_the_iri_grammar_and_still_validates_notebooks():
    """Every headless run starts `kdlab.papermill_cli`, whose jsonschema never compiles rfc3987-syntax's grammar
    (1.0 s a run on a 2-core CPU) and whose nbformat still rejects an invalid notebook."""
    import subprocess

    assert runner.PAPERMILL == [sys.executable, "-m", "kdlab.papermill_cli"]
    done = subprocess.run([sys.executable, "-c", SKIPPED_GRAMMAR], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "grammar imported: False | broken rejected: True" in done.stdout, done.stdout + done.stderr
