"""Show the package's code under an equation, highlighted, in the notebook's saved output.

    from kdlab.show import source
    source(losses.kd_loss)                       # the function, syntax-highlighted

`IPython.display.Code` renders as highlighted HTML in JupyterLab and in the rendered book, and keeps a
plain-text copy, so the code is readable in a committed notebook and in a terminal too.
"""
import inspect
import textwrap


def source_text(*objects):
    """The source of each object, dedented, separated by a blank line."""
    return "\n\n".join(textwrap.dedent(inspect.getsource(obj)).rstrip() for obj in objects)


def source(*objects):
    """Display the source of functions, classes or methods, highlighted as Python."""
    from IPython.display import Code, display

    display(Code(source_text(*objects), language="python"))
