"""PYTHONSTARTUP of a kernel the book executes: installs `kdlab.book.kernel_hook` (alt texts), nothing else."""
import kdlab.book.kernel_hook as _kdlab_book_hook  # noqa: F401 (installs itself on import)

del _kdlab_book_hook
