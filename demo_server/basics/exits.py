"""Every exit code a racelab command ends with, in one table.

CI gates on these, so exit 1 means one thing only: a race was found.

| exit | when |
| --- | --- |
| 0 | safe: no anomaly seen (``check``, ``--assert-safe``), or the command did its job |
| 1 | race: anomalies found, with witnesses |
| 2 | unknown (a crashed server, a dead store, an interrupted or undecidable run), bad input (a usage mistake, a value out of bounds, an unreadable file), or racelab could not do the job |
| 128 + N | stopped by signal N: 130 SIGINT, 143 SIGTERM, 129 SIGHUP |
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BAD_INPUT", "EXIT", "FAILED", "RACE", "SAFE", "UNKNOWN", "signal_exit",
           "verdict_exit", "verdicts_exit"]

SAFE = 0
RACE = 1
UNKNOWN = 2
BAD_INPUT = 2
FAILED = 2
#: The exit code of each verdict word (``reports.history.verdict.VERDICT_WORDS``).
EXIT = {"safe": SAFE, "race": RACE, "unknown": UNKNOWN}
_WORST = ("race", "unknown", "safe")


def verdict_exit(word: str) -> int:
    """The exit code for one verdict word; anything but ``safe`` or ``race`` is unknown."""
    return EXIT.get(word, UNKNOWN)


def verdicts_exit(words: Iterable[str]) -> int:
    """The exit code for several verdicts: any race, else any unknown, else safe.

    No verdict at all is unknown: nothing was shown safe.
    """
    seen = set(words)
    for word in _WORST:
        if word in seen:
            return verdict_exit(word)
    return UNKNOWN


def signal_exit(signum: int) -> int:
    """The exit code of a command stopped by a signal, as shells report it (128 + N)."""
    return 128 + int(signum)
