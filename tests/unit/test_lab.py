"""The student's lab and the author's lab: own copies that are never overwritten, worked solutions without
the grader's hidden tests, the lab settings (widget state saved, no news, no nbgrader for students), and
the git filter that keeps run-and-saved notebooks out of commits."""
import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from kdlab import lab, strip
from kdlab.assign import HIDDEN_TEST_MARKERS, SOLUTION_MARKERS

from ..notebooks.conftest import NOTEBOOK_DIR, NOTEBOOKS

GRADED = "01_knowledge_distillation.ipynb"  # has solutions and hidden tests


@pytest.fixture
def course(tmp_path):
    """A copy of two solution notebooks, so a test can change the kit's version."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("00_start_here.ipynb", GRADED):
        shutil.copy(NOTEBOOK_DIR / name, folder / name)
    return folder


def _edit(path, text):
    notebook = nbformat.read(str(path), as_version=4)
    notebook.cells.append(nbformat.v4.new_markdown_cell(text))
    nbformat.write(notebook, str(path))


def test_the_work_folder_gets_student_versions_and_worked_solutions(course, tmp_path):
    work = tmp_path / "work"
    assert lab.fill_work_dir(work, course) == {"00_start_here.ipynb": "handed out", GRADED: "handed out"}
    handed = (work / GRADED).read_text()
    assert "# YOUR CODE HERE" in handed
    assert not any(marker in handed for marker in SOLUTION_MARKERS + HIDDEN_TEST_MARKERS)
    solution_source = (course / GRADED).read_text()
    worked = (work / "solutions" / GRADED).read_text()
    assert "# YOUR CODE HERE" not in worked and not any(m in worked for m in SOLUTION_MARKERS)
    assert any(m in solution_source for m in HIDDEN_TEST_MARKERS) and not any(m in worked for m in HIDDEN_TEST_MARKERS)
    assert not (work / "solutions" / GRADED).stat().st_mode & 0o222, "worked solutions must be read-only"
    assert lab.fill_work_dir(work, course)[GRADED] == "unchanged"


def test_a_students_work_is_never_overwritten_and_untouched_copies_follow_the_kit(course, tmp_path):
    work = tmp_path / "work"
    lab.fill_work_dir(work, course)
    _edit(work / GRADED, "my answer")  # the student's work
    _edit(course / GRADED, "the kit's new explanation")
    _edit(course / "00_start_here.ipynb", "the kit's new explanation")
    actions = lab.fill_work_dir(work, course)
    assert actions == {"00_start_here.ipynb": "updated", GRADED: "kept"}
    assert "my answer" in (work / GRADED).read_text()
    assert "the kit's new explanation" not in (work / GRADED).read_text()
    assert "the kit's new explanation" in (work / "00_start_here.ipynb").read_text()
    assert "the kit's new explanation" in (work / "solutions" / GRADED).read_text()
    assert lab.fill_work_dir(work, course)[GRADED] == "kept"  # and on every later start


def test_the_student_lab_saves_widget_state_and_hides_nbgrader(tmp_path, monkeypatch):
    monkeypatch.setattr(lab, "SETTINGS_DIR", tmp_path / "settings")
    student = lab.jupyter_command("student", tmp_path, port=8890, token="t")
    author = lab.jupyter_command("author", tmp_path, port=8890, token="t")
    for kind, command in (("student", student), ("author", author)):
        folder = tmp_path / "settings" / kind
        assert f"--LabApp.app_settings_dir={folder}" in command
        overrides = json.loads((folder / "overrides.json").read_text())
        assert overrides["@jupyter-widgets/jupyterlab-manager:plugin"]["saveState"] is True
        assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
        assert "--ip" in command and command[command.index("--ip") + 1] == "127.0.0.1"
    assert json.loads((tmp_path / "settings/student/page_config.json").read_text())["disabledExtensions"] == [
        lab.NBGRADER]
    assert json.loads((tmp_path / "settings/author/page_config.json").read_text())["disabledExtensions"] == []
    disabled = [a for a in student if a.startswith("--ServerApp.jpserver_extensions=nbgrader")]
    assert len(disabled) == len(lab.NBGRADER_SERVER) and all(a.endswith("=False") for a in disabled)
    assert not [a for a in author if "jpserver_extensions" in a]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stripping_a_committed_notebook_changes_no_byte(path):
    assert strip.strip_text(path.read_text()) == path.read_text()


def _run_and_save(path):
    """What a kernel and JupyterLab add to a notebook: outputs, counts, language_info, view state."""
    notebook = nbformat.read(str(path), as_version=4)
    notebook.metadata.language_info = {"name": "python", "version": "3.11.9", "file_extension": ".py"}
    notebook.metadata.widgets = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for number, cell in enumerate(c for c in notebook.cells if c.cell_type == "code"):
        cell.execution_count = number + 1
        cell.outputs = [nbformat.v4.new_output("stream", text="trained\n")]
        cell.metadata["scrolled"] = True
    nbformat.write(notebook, str(path))


def test_the_git_filter_keeps_run_and_saved_notebooks_out_of_commits(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "clone"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOK_DIR / GRADED, repo / "notebooks" / GRADED)
    shutil.copy(NOTEBOOK_DIR.parent / ".gitattributes", repo / ".gitattributes")

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("-c", "user.name=kdlab", "-c", "user.email=kdlab@localhost", "commit", "-q", "--allow-empty", "-m", "0")
    assert lab.install_strip_filter(repo)
    assert git("config", "filter.kdlab-notebook.clean") == f"{sys.executable} -m kdlab.strip\n"
    git("add", ".")
    git("-c", "user.name=kdlab", "-c", "user.email=kdlab@localhost", "commit", "-q", "-m", "1")
    _run_and_save(repo / "notebooks" / GRADED)
    assert git("diff") == "", "a run-and-saved notebook shows as a change"
    git("add", ".")  # git status lists the file (its size changed) until it is added, as with nbstripout
    assert git("status", "--porcelain") == "", "adding a run-and-saved notebook staged a change"
    _edit(repo / "notebooks" / GRADED, "a new paragraph")
    git("add", ".")
    committed = git("show", f":notebooks/{GRADED}")
    assert "a new paragraph" in committed and '"trained' not in committed and "3.11.9" not in committed


def test_no_filter_is_installed_outside_a_git_checkout(tmp_path):
    assert lab.install_strip_filter(tmp_path) is False
