"""The tests use the package's finite-difference oracle (one copy, `kdlab.gradcheck`)."""
from kdlab.gradcheck import finite_differences, relative_error  # noqa: F401
