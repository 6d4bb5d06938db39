"""The progress bar (tqdm in a live kernel, nothing headless) and the stop button's clean exit."""
import contextlib


def progress_bar(total, progress, desc="epochs"):
    from ..env import headless

    if progress is None:
        progress = not headless()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


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
