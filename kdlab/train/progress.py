"""The progress bar: tqdm in a live kernel, nothing headless (papermill, CI)."""


def progress_bar(total, progress, desc="epochs"):
    from ..env import headless

    if progress is None:
        progress = not headless()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)
