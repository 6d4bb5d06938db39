"""Pure functions and panels behind each notebook's experiments, one module per notebook.

Notebooks call these so the headless tests can drive the very same code the student's sliders drive.
"""
