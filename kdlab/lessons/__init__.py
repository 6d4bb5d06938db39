"""Pure functions and panels behind each notebook's experiments: one module per notebook, which the notebook imports as
`lesson`, and companion modules (`<lesson>_plots`, `_panel`, `_teachers`, `_runs`) for its figures, panel and parts.

Notebooks call these so the headless tests can drive the very same code the student's sliders drive.
"""
