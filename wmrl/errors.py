"""User-facing errors.

A :class:`WmrlError` is a mistake the user can fix (bad id, bad override, corrupt run directory).
The CLI prints its message without a traceback and exits non-zero; internal bugs stay exceptions.
"""


class WmrlError(Exception):
    """A problem in the user's input; the message names the problem and the fix."""

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem = problem
        self.fix = fix
