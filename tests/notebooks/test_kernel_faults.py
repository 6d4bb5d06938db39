"""Faults injected through a real Jupyter kernel: the stop button during training, and Run All twice.

The kernel is started with jupyter_client exactly as JupyterLab starts it; `interrupt_kernel` sends the
same SIGINT as the stop button.
"""
import queue
import time

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel

from .conftest import NOTEBOOK_DIR

pytestmark = pytest.mark.notebook


@pytest.fixture
def kernel(monkeypatch):
    monkeypatch.setenv("KDLAB_PROFILE", "smoke")
    monkeypatch.setenv("KDLAB_HEADLESS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(NOTEBOOK_DIR))
    try:
        yield manager, client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run(client, code, timeout=240):
    """Execute `code`; return its stdout. Raises AssertionError with the traceback on an error."""
    out = []

    def keep(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=timeout, output_hook=keep)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


def wait_for_text(client, msg_id, text, timeout=120):
    """Read the kernel's output of request `msg_id` until `text` appears."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            seen += msg["content"]["text"]
            if text in seen:
                return seen
    raise AssertionError(f"{text!r} never appeared; output so far: {seen!r}")


def test_the_stop_button_during_training_keeps_history_and_model_and_training_resumes(kernel):
    manager, client = kernel
    run(client, """
import torch
from kdlab.data import load
from kdlab.models import MLP
from kdlab.train import fit
data = load("digits", train_size=300)
model = MLP(64, 32, 10)
announce = lambda history, model: print(f"epoch {history.epochs_done} done", flush=True)
""")
    msg_id = client.execute("history = fit(model, data, epochs=100000, lr=0.05, progress=False, "
                            "callbacks=[announce])")
    wait_for_text(client, msg_id, "epoch 3 done")
    manager.interrupt_kernel()
    reply = client.get_shell_msg(timeout=60)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok", "fit turns the interrupt into a clean stop"

    out = run(client, """
done = history.epochs_done
assert history.interrupted and 3 <= done < 100000, done
with torch.no_grad():
    assert torch.isfinite(model(data.x_test)).all()
history = fit(model, data, epochs=2, lr=0.05, progress=False, history=history)
print("resumed", done, "->", history.epochs_done, history.series("epoch")[-2:], history.interrupted)
""")
    done = int(out.split()[1])
    assert f"-> {done + 2} [{done + 1}, {done + 2}] False" in out


def code_cells(name):
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("name", ["01_knowledge_distillation.ipynb", "05_mmkd.ipynb"])
def test_run_all_twice_in_one_kernel_gives_the_same_numbers(kernel, name):
    """Every experiment cell seeds its own generators, so a second Run All reproduces the first."""
    _, client = kernel
    cells = code_cells(name)
    # wall-clock timings (a name with the word seconds, ms or minutes) are the only numbers allowed to differ
    snapshot = ("import kdlab.results as _r; print('RESULTS', sorted((k, v) for k, v in _r.all_results().items() "
                "if not {'seconds', 'ms', 'minutes'} & set(k.split('_'))))")
    for source in cells:
        run(client, source)
    first = run(client, snapshot)
    run(client, "_r.clear()")
    for source in cells:
        run(client, source)
    second = run(client, snapshot)
    assert "RESULTS [(" in first, "the notebook recorded nothing"
    assert second == first


def worker_processes(kernel_pid):
    """The kernel's spawned worker processes (not multiprocessing's resource tracker)."""
    from pathlib import Path

    from kdlab.runner import _descendants

    found = set()
    for pid, _ in _descendants(kernel_pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


def test_the_stop_button_during_runs_in_worker_processes_stops_them_and_the_next_call_works(kernel):
    """Jupyter's interrupt signals the kernel's process group: the workers ignore it, the kernel kills them and
    raises KeyboardInterrupt at once (not after the runs), and the next call starts new workers."""
    manager, client = kernel
    run(client, "import time\nfrom kdlab import parallel")
    msg_id = client.execute("print('sent', flush=True)\nparallel.map_in_workers(time.sleep, [120, 120, 120], workers=2)")
    wait_for_text(client, msg_id, "sent")
    kernel_pid = manager.provisioner.process.pid
    deadline = time.monotonic() + 60
    while len(worker_processes(kernel_pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # the workers are in time.sleep(120) now
    workers = worker_processes(kernel_pid)
    assert len(workers) == 2, workers
    interrupted = time.monotonic()
    manager.interrupt_kernel()
    reply = client.get_shell_msg(timeout=60)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - interrupted < 30, "the cell waited for the runs"
    time.sleep(1)
    assert not workers & worker_processes(kernel_pid), "a worker outlived the interrupt"
    out = run(client, "print(parallel.map_in_workers(abs, [-1, -2, -3], workers=2))")
    assert "[1, 2, 3]" in out
