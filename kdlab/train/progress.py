"""The progress bar (HTML in a live kernel, nothing headless) and the stop button's clean exit.

The bar is an HTML `<progress>` element in a display handle, not a widget: a closed tqdm widget leaves a
widget view whose model no longer exists, and after a save and a reload JupyterLab shows "Error
displaying widget: model not found" in its place. When training ends, the bar is replaced by one line
of text that says what ran, so a saved notebook holds nothing dead.
"""
import contextlib
import html
import time

MIN_INTERVAL_S = 0.2  # redraws at most five times a second: a fast loop must not flood the front end


class HtmlProgress:
    """tqdm's small API (`update`, `set_postfix`, `close`) drawn into one display handle."""

    def __init__(self, total, desc="epochs"):
        from IPython.display import HTML, display

        self.total, self.desc, self.n = total, desc, 0
        self.postfix = {}
        self.started = self._drawn_at = time.perf_counter()
        self.closed = False
        self._handle = display(HTML(self._bar_html()), display_id=True)

    def update(self, n=1):
        self.n += n
        now = time.perf_counter()
        if now - self._drawn_at >= MIN_INTERVAL_S or self.n >= self.total:
            self._draw(self._bar_html())
            self._drawn_at = now

    def set_postfix(self, **values):
        self.postfix = {name: str(value) for name, value in values.items()}

    def close(self):
        """Replace the bar by a line of text: how far it got, in how long, and the last postfix."""
        if self.closed:
            return
        self.closed = True
        seconds = time.perf_counter() - self.started
        self._draw(f"<span class='kdlab-progress-done'>{html.escape(self.summary(seconds))}</span>")

    def summary(self, seconds):
        done = f"{self.desc}: {self.n}/{self.total} in {seconds:.1f} s"
        return done + "".join(f", {name} {value}" for name, value in self.postfix.items())

    def _bar_html(self):
        seconds = time.perf_counter() - self.started
        text = html.escape(self.summary(seconds))
        return (f"<div class='kdlab-progress'><progress value='{self.n}' max='{max(self.total, 1)}' "
                f"style='width: 16em; vertical-align: middle'></progress> <code>{text}</code></div>")

    def _draw(self, markup):
        from IPython.display import HTML

        if self._handle is not None:
            self._handle.update(HTML(markup))


def progress_bar(total, progress, desc="epochs"):
    """An `HtmlProgress` in a Jupyter kernel, tqdm's text bar in a terminal (`kdlab reproduce`), None
    headless (`progress=None` there) or when `progress` is False."""
    from ..env import headless

    if progress is None:
        progress = not headless()
    if not progress:
        return None
    if in_kernel():
        return HtmlProgress(total, desc=desc)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc)


def in_kernel():
    """True inside a Jupyter kernel (a front end renders HTML), False in a terminal or plain Python."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


@contextlib.contextmanager
def stoppable(method, history, bar, interrupted):
    """Train `method` inside the block; the stop button (KeyboardInterrupt) ends it cleanly: the History is
    marked interrupted and `interrupted()` (a message) is printed, the models keep the weights of the last
    completed step; the bar is closed and the method put in eval mode whatever happens."""
    method.train()
    try:
        yield
    except KeyboardInterrupt:
        history.interrupted = True
        print(interrupted())
    finally:
        if bar is not None:
            bar.close()
        method.eval()
