"""Planted bugs: a test suite is only as good as the bugs it catches.

A mutant is a context manager that plants one concrete bug in a method (an equation skipped, a tensor
detached, first order for second, the wrong optimiser state, the wrong data source, a sign flipped),
usually by patching one module-level function with `unittest.mock.patch`. `assert_caught(check, mutant)`
runs one of the method's own checks (the same function its ordinary test calls) with the bug planted and
requires it to fail BY AN ASSERTION: a mutant that passes survived, and one that crashes proves nothing
about the assertions.

    MUTANTS = {"teacher logits detached": lambda: patch.object(md, "teacher_logits_for", detached_version)}

    @pytest.mark.parametrize("name", MUTANTS)
    def test_planted_bug_is_caught(name):
        assert_caught(check_meta_gradient_matches_oracle, MUTANTS[name])
"""
import pytest


def assert_caught(check, mutant):
    """`check()` must pass as written (the caller's ordinary test shows that) and fail by an
    AssertionError with `mutant()` planted."""
    with mutant():
        try:
            check()
        except AssertionError:
            return
        except Exception as error:  # noqa: BLE001 - a crash is not a caught bug
            pytest.fail(f"the planted bug crashed the check instead of failing an assertion: {error!r}")
    pytest.fail("the planted bug survived: every assertion of the check passed")
