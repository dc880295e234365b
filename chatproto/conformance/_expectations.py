"""The expectations file: known failures, each with a reason.

Owns: reading the file and matching test IDs against it. The format is one
entry a line, an ID glob then the reason; ``#`` starts a comment::

    # our server predates §12.1
    ROB-54  half-close closes at once, replies are lost (issue 12)
    IDL-*   no idle timeout yet

A test listed here that fails is ``XFAIL`` (the run stays conformant); one that
passes is reported normally, with a note to remove the entry (and listed in
the report's summary). An entry that matches no test ID at all is an error.
Never runs tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

__all__ = ["Expectations", "ExpectationsError"]


class ExpectationsError(ValueError):
    """The file is malformed (a usage error, exit code 2)."""


@dataclass(frozen=True)
class Expectations:
    """Known failures: ``(glob, reason)`` pairs in file order."""

    entries: tuple[tuple[str, str], ...] = ()
    source: str = ""

    @classmethod
    def parse(cls, text: str, source: str = "<expectations>") -> Expectations:
        """Parse the file's text; :class:`ExpectationsError` names the bad line."""
        entries = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            pattern, _, reason = line.partition(" ")
            if not reason.strip():
                raise ExpectationsError(
                    f"{source}:{number}: every entry needs a reason: {raw.strip()!r}"
                )
            entries.append((pattern.upper(), reason.strip()))
        return cls(tuple(entries), source)

    @classmethod
    def load(cls, path: str | Path) -> Expectations:
        """Read and parse a file."""
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ExpectationsError(f"cannot read expectations file {path}: {exc}") from exc
        return cls.parse(text, str(path))

    def check_known(self, test_ids: list[str]) -> None:
        """Raise :class:`ExpectationsError` for an entry that matches no test at all.

        A typo in an ID would otherwise silently expect nothing.
        """
        for pattern, _reason in self.entries:
            if not any(fnmatchcase(i.upper(), pattern) for i in test_ids):
                raise ExpectationsError(
                    f"{self.source}: {pattern!r} matches no test ID; "
                    "see 'chatproto-conformance list'"
                )

    def reason_for(self, test_id: str) -> str | None:
        """The reason ``test_id`` is expected to fail, or ``None``."""
        for pattern, reason in self.entries:
            if fnmatchcase(test_id.upper(), pattern):
                return reason
        return None
