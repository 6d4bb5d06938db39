"""The `kdlab` command: `kdlab doctor`, `kdlab run`, and subcommands other modules register.

A module adds a subcommand by calling `register(name, run, help=..., configure=...)` when it is
imported and by being listed in EXTENSIONS, e.g. in kdlab/sweep.py:

    from .cli import register
    register("sweep", run_sweep_command, help="run a parameter grid", configure=add_sweep_arguments)
"""
import argparse
import importlib
import importlib.metadata
import os
import platform
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import KdlabError

EXTENSIONS = ("kdlab.sweep", "kdlab.assign", "kdlab.grade", "kdlab.lab", "kdlab.edges")  # may register subcommands; absent ones are skipped
NETWORK_PROBE = ("www.cs.toronto.edu", 443)  # CIFAR's host: what `full` needs to download
REQUIRED = {"python", "kdlab", "torch", "torchvision", "papermill", "data root"}


@dataclass(frozen=True)
class Command:
    help: str
    run: object  # run(args) -> exit code
    configure: object = None  # configure(parser) adds the command's options


COMMANDS = {}


def register(name, run, *, help, configure=None):
    """Make `kdlab NAME` call `run(args)`; `configure(parser)` adds its arguments."""
    COMMANDS[name] = Command(help, run, configure)


def main(argv=None):
    """Entry point of the `kdlab` console script; returns the exit code."""
    for module in EXTENSIONS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                print(f"kdlab: the commands of {module} are unavailable: {error}", file=sys.stderr)
        except Exception as error:  # a broken extension must not take `kdlab doctor` down with it
            print(f"kdlab: the commands of {module} are unavailable: {error!r}", file=sys.stderr)
    parser = argparse.ArgumentParser(prog="kdlab", description="meta-learning for knowledge distillation, "
                                     "a notebook teaching kit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        if command.configure:
            command.configure(sub)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except KdlabError as error:
        print(f"kdlab {args.command}: {error}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------- doctor


def doctor_report():
    """Check this environment; a list of (item, value, ok) rows that a notebook can show as well."""
    rows = [("python", f"{platform.python_version()} ({sys.executable})", sys.version_info >= (3, 10))]
    rows.append(_version_row("kdlab"))
    rows.extend(_torch_rows())
    rows.append(_data_root_row())
    rows.append(_datasets_row())
    rows.append(_network_row())
    for package in ("papermill", "jupyterlab", "ipywidgets", "jupyterlab_widgets"):
        rows.append(_version_row(package))
    rows.append(_kernel_row())
    return rows


def format_report(rows):
    """The doctor's rows as aligned text: 'ok' or '!!' in front of each item."""
    width = max(len(item) for item, _, _ in rows)
    return "\n".join(f"{'ok' if ok else '!!'}  {item.ljust(width)}  {value}" for item, value, ok in rows)


def _version_row(package):
    try:
        return package, importlib.metadata.version(package), True
    except importlib.metadata.PackageNotFoundError:
        return package, "not installed", False


def _torch_rows():
    try:
        import torch
    except Exception as error:  # a broken install raises more than ImportError
        return [("torch", f"cannot import: {error}", False)]
    rows = [("torch", torch.__version__, True)]
    try:
        import torchvision

        rows.append(("torchvision", torchvision.__version__, True))
    except Exception as error:  # e.g. "operator torchvision::nms does not exist" next to a CPU-only torch
        rows.append(("torchvision", f"cannot import: {error}", False))
    if torch.cuda.is_available():
        device = f"cuda: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} GPU)"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps (Apple GPU)"
    else:
        device = "cpu (no GPU found: the smoke and class profiles are made for this)"
    rows.append(("device", device, True))
    rows.append(_threads_row(torch))
    return rows


def _threads_row(torch):
    """The torch thread count the notebooks use (kdlab.env.default_threads), not this process's."""
    from .env import default_threads, threads_source

    try:
        threads = default_threads(torch.device("cpu"))
    except ValueError:
        return "threads", f"KDLAB_THREADS={os.environ.get('KDLAB_THREADS')!r} is not a whole number", False
    plural = "s" if threads != 1 else ""
    text = f"{threads} torch thread{plural} in notebooks ({threads_source()}), {os.cpu_count()} CPU cores"
    return "threads", text, True


def _data_root_row():
    from .paths import data_root

    try:
        root = data_root()
    except OSError as error:
        return "data root", f"cannot create: {error}", False
    writable = os.access(root, os.W_OK)
    return "data root", f"{root}" + ("" if writable else " (not writable: set KDLAB_DATA)"), writable


def _datasets_row():
    """Which datasets are registered, offline ones (built here, no download) first."""
    try:
        from .data import registry

        offline = registry.available(offline_only=True)
        online = [name for name in registry.available() if name not in offline]
    except Exception as error:  # kdlab.data missing or broken: the doctor still reports the rest
        return "datasets", f"cannot list: {error!r}", False
    return "datasets", f"offline: {', '.join(offline) or 'none'}; download: {', '.join(online) or 'none'}", True


def _network_row(timeout=2.0):
    """Can the dataset host be reached? A thread bounds the wait, since DNS ignores socket timeouts."""
    outcome = {}

    def probe():
        try:
            socket.create_connection(NETWORK_PROBE, timeout=timeout).close()
            outcome["ok"] = True
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if outcome.get("ok"):
        return "network", f"{NETWORK_PROBE[0]} reachable: online datasets can download", True
    return "network", (f"{NETWORK_PROBE[0]} not reachable: use the offline datasets (digits, mnist1d, "
                       "glyphs); the full profile needs CIFAR/Omniglot downloads"), False


def _kernel_row():
    """Does papermill's kernel 'python3' start this interpreter (and so see kdlab)?"""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        spec = KernelSpecManager().get_kernel_spec("python3")
    except ImportError:
        return "kernel python3", "jupyter_client is not installed", False
    except NoSuchKernel:
        return "kernel python3", "missing: python -m ipykernel install --user", False
    program = spec.argv[0]
    # jupyter_client starts its own interpreter when the spec says plain "python"
    same = program in ("python", "python3") or Path(program).resolve() == Path(sys.executable).resolve()
    shown = sys.executable if same else f"{program} (not this interpreter: kdlab may be missing there)"
    return "kernel python3", shown, same


def _doctor(args):
    rows = doctor_report()
    print(format_report(rows))
    failed = [item for item, _, ok in rows if not ok and item in REQUIRED]
    return 1 if failed else 0


register("doctor", _doctor, help="check python, torch, device, data, network and Jupyter")


# --------------------------------------------------------------------------- run


def _configure_run(parser):
    from .config import PROFILES

    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks or folders of NN_*.ipynb notebooks (default: notebooks/)")
    parser.add_argument("--profile", choices=PROFILES, default=os.environ.get("KDLAB_PROFILE") or "class",
                        help="run profile (default: $KDLAB_PROFILE or class)")
    parser.add_argument("--out", type=Path, help="folder for executed notebooks (default: runs/PROFILE)")
    parser.add_argument("--execution-timeout", type=int, help="seconds allowed per cell")
    parser.add_argument("--timeout", type=float, help="seconds allowed per notebook")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a notebook that timed out (default 1)")


def _run(args):
    from . import runner
    from .paths import REPO_ROOT, runs_dir

    out = args.out or runs_dir() / args.profile
    options = dict(profile=args.profile, execution_timeout=args.execution_timeout,
                   outer_timeout=args.timeout, retries=args.retries)
    paths = []
    for given in args.notebooks or [REPO_ROOT / "notebooks"]:
        paths.extend(runner.find_notebooks(given) if given.is_dir() else [given])
    runs = runner.run_notebooks(paths, out, **options)
    print(runner.format_table(runs))
    summary = runner.write_summary(runs, Path(out) / "results.json", profile=args.profile)
    print(f"executed notebooks: {out}")
    print(f"key numbers and run times: {summary}")
    return 0 if all(run.ok for run in runs) else 1


register("run", _run, help="execute notebooks headless with papermill and tabulate their results",
         configure=_configure_run)


# --------------------------------------------------------------------------- methods


def format_cards(names=None, width=100):
    """The registry's cards of `names` (default: every method) as text: the name, then one wrapped line
    per field (paper, equations, detached, order, loop, and deviations where declared)."""
    import textwrap

    from .methods import registry

    blocks = []
    for name in names or registry.names():
        card = registry.card(name)
        fields = list(registry.CARD_FIELDS) + [f for f in card if f not in registry.CARD_FIELDS]
        lines = [name]
        for field in fields:
            lines.append(textwrap.fill(str(card.get(field, "")), width, initial_indent=f"  {field:<10} ",
                                       subsequent_indent=" " * 13))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _methods(args):
    print(format_cards(args.names))
    return 0


register("methods", _methods, help="list the methods of the registry with their cards (paper, equations, "
         "what is detached, gradient order, loop)",
         configure=lambda parser: parser.add_argument("names", nargs="*", help="method names (default: all)"))

# --------------------------------------------------------------------------- reproduce


def _reproduce_arguments(parser):
    parser.add_argument("settings", nargs="*", metavar="SETTING", help="kdlab.recipes names, or 'all' (default)")
    parser.add_argument("--list", action="store_true", help="print the recipe table and exit")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per setting (default 1)")
    parser.add_argument("--epochs", type=int, help="shorten every run (iterations for few-shot settings); the row "
                        "is marked not comparable")
    parser.add_argument("--out", help="folder of the tables and checkpoints (default runs/reproduce)")
    parser.add_argument("--executor", default="local", help="local (default) or dask")
    parser.add_argument("--scheduler", help="Dask scheduler address (tcp://HOST:PORT) with --executor dask")
    parser.add_argument("--workers", type=int, default=1, help="local worker threads (default 1)")
    parser.add_argument("--checkpoint-every", type=int, help="epochs (iterations) between checkpoints")
    parser.add_argument("--device", help="torch device (default: cuda if available; cpu for --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="a few steps on CPU with FakeData of the real shapes")
    parser.add_argument("--steps", type=int, default=2, help="steps per epoch in the dry run (default 2)")
    parser.add_argument("--batch", type=int, help="a smaller batch (meta-batch) for the dry run only")


def _reproduce(args):
    from . import recipes, reproduce

    if args.list:
        print(recipes.table())
        return 0
    result = reproduce.reproduce(args.settings, seeds=args.seeds, epochs=args.epochs, out=args.out,
                                 executor=args.executor, scheduler=args.scheduler, workers=args.workers,
                                 dry_run=args.dry_run, steps=args.steps, batch=args.batch,
                                 checkpoint_every=args.checkpoint_every, device=args.device)
    rows, costs = result if args.dry_run else (result, [])
    for row in rows:
        print(f"{row['setting']}: paper {row['paper_number']}, ours {row['ours_mean']} ± {row['ours_half_width']} "
              f"({row['seeds']} seeds, comparable: {row['comparable']})")
    for row in costs:
        print(f"{row['setting']}: {row['step_ms']} ms/step, {row['peak_mb']} MB, projected {row['projected_hours']} h")
    return 0


register("reproduce", _reproduce, help="run the papers' headline settings (kdlab.recipes) and compare with the "
         "papers; --dry-run checks every path on CPU with FakeData", configure=_reproduce_arguments)


if __name__ == "__main__":  # import by name, so extensions register into the same COMMANDS
    from kdlab.cli import main as kdlab_main

    sys.exit(kdlab_main())
