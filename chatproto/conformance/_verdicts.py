"""The verdicts a test body can stop with, besides passing.

Owns: :class:`CheckFailed` (the server did not do what the test checks: what
was expected, what came, and the root cause when the failure knows it),
:class:`SkipTest` and :class:`NotImplementedFeature`. A test body raises them
through its :class:`~._context.TestContext` (``fail``, ``skip``, ``need``);
the runner turns each into an outcome. A server that stopped answering is the
run's verdict, not a test's: :class:`~._liveness.ServerUnresponsive`. Never
runs a test.
"""

from __future__ import annotations

__all__ = ["CheckFailed", "NotImplementedFeature", "SkipTest"]


class CheckFailed(Exception):  # noqa: N818  (a verdict, not an error)
    """The server did not do what the test checks."""

    def __init__(
        self,
        message: str,
        *,
        expected: str | None = None,
        got: str | None = None,
        cause: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.got = got
        #: The root cause in words, when the failure knows better than its test.
        self.cause = cause


class SkipTest(Exception):  # noqa: N818  (a verdict, not an error)
    """The test cannot say anything about this target (the reason is the message)."""


class NotImplementedFeature(Exception):  # noqa: N818  (a verdict, not an error)
    """A README Bonus feature the test needs is absent (core: NOT-IMPLEMENTED)."""
