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


def require_positive(section: str, obj: object, *names: str) -> None:
    """Raise a WmrlError naming the first of `obj`'s fields `names` that is not > 0."""
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise WmrlError(f"{section}.{name}={value} must be positive", f"set --set {section}.{name}=<positive>")
