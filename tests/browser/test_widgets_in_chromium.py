"""Widgets proven in a real browser: JupyterLab from the project's .venv, headless Chromium via Playwright.

Runs every cell of a notebook in the smoke profile, moves a slider with the keyboard and asserts that the
panel's printed readout changed (the readout is computed from the plotted data). Screenshots go to
`artifacts/browser/`. Needs Debian's chromium (`.ci/run` installs it); skipped when it is missing.
"""
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts" / "browser"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the sliders each notebook's panels must answer in the browser
SLIDERS = {
    "01_knowledge_distillation.ipynb": ["ALPHA", "TEMPERATURE"],
    "02_maml.ipynb": ["INNER_STEPS"],
    "03_metadistil.ipynb": ["ALPHA", "TEMPERATURE", "TEACHER_LR"],
    "04_metadistiller.ipynb": ["ALPHA", "TEMPERATURE", "META_EVERY"],
    "05_mmkd.ipynb": ["TEMPERATURE", "BETA", "META_EVERY"],
    "06_tsmd.ipynb": ["INNER_STEPS", "KD_WEIGHT", "TEMPERATURE"],
    "07_meta_feature_distillation.ipynb": ["ALPHA", "INNER_STEPS"],
    "08_comparison.ipynb": ["ALPHA", "TEMPERATURE"],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 with a token, serving a copy of the notebooks; stopped (with its kernels) after."""
    workdir = tmp_path_factory.mktemp("lab")
    for name in SLIDERS:
        shutil.copy(ROOT / "notebooks" / name, workdir / name)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "KDLAB_PROFILE": "smoke", "JUPYTER_NO_CONFIG": "1"}
    env.pop("KDLAB_HEADLESS", None)  # the browser is the person: widgets must be interactive
    env.pop("CI", None)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={workdir}", "--LabApp.news_url=", "--allow-root"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        yield base, token
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("chromium")),
                                                       executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                       viewport={"width": 1400, "height": 1000})
        yield context
        context.close()


def _run_all_and_wait(page, timeout_s):
    try:  # a fresh server may ask which kernel to start
        page.locator(".jp-Dialog .jp-mod-accept", has_text="Select").click(timeout=15_000)
    except Exception:  # noqa: BLE001 (no dialog: the kernel started by itself)
        pass
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()  # the Run menu
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    deadline = time.time() + timeout_s
    time.sleep(3)
    while time.time() < deadline:  # the kernel is idle again and every panel has printed its readout
        status = page.locator(".jp-Notebook-ExecutionIndicator").first.get_attribute("data-status") or ""
        readouts = _readouts(page)
        if status == "idle" and readouts and all(readouts):
            return
        time.sleep(1)
    page.screenshot(path=str(ARTIFACTS / "timeout.png"), full_page=True)
    pytest.fail(f"the notebook did not finish within {timeout_s} s")


def _readouts(page):
    return [r.text_content() for r in page.locator(".kdlab-readout").all()]


@pytest.mark.parametrize("notebook,sliders", SLIDERS.items())
def test_moving_a_slider_changes_the_plotted_data(lab, browser, notebook, sliders):
    base, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    started = time.time()
    page.goto(f"{base}/lab/tree/{notebook}?token={token}&reset")
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    _run_all_and_wait(page, timeout_s=300)
    for label in sliders:
        before = _readouts(page)
        slider = page.locator(".widget-slider:visible", has=page.locator("label", has_text=label)).first
        slider.scroll_into_view_if_needed()
        handle = slider.locator(".noUi-handle").first
        for _ in range(2):  # press on the handle itself: an arrow key that reached the notebook would
            handle.press("ArrowLeft")  # move the cell selection or fold a heading instead
        deadline = time.time() + 60
        while time.time() < deadline and _readouts(page) == before:
            time.sleep(0.5)
        after = _readouts(page)
        page.screenshot(path=str(ARTIFACTS / f"{Path(notebook).stem}_{label}.png"))
        print(f"{notebook} {label}: {before} -> {after} ({time.time() - started:.1f} s)")
        assert after != before, f"moving {label} changed nothing in the browser"
    page.close()
