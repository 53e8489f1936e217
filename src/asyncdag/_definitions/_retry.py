"""Retry policies: how many more attempts a failing step gets, and how long it waits between them.

The delay arithmetic is Dagster's, so a policy ported from Dagster behaves the same.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import DefinitionError

if TYPE_CHECKING:
    import random

__all__ = ["Backoff", "Jitter", "RetryPolicy"]


class Backoff(enum.Enum):
    """How the delay grows with each attempt."""

    LINEAR = "LINEAR"
    EXPONENTIAL = "EXPONENTIAL"


class Jitter(enum.Enum):
    """Randomness added to the delay, so retries of many steps do not land at once."""

    FULL = "FULL"
    PLUS_MINUS = "PLUS_MINUS"


def _check_retry_on(_instance: Any, _attribute: Any, value: tuple[type, ...]) -> None:
    for exc_type in value:
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise DefinitionError(
                f"RetryPolicy(retry_on=...) takes exception classes; got {exc_type!r}"
            )


def _to_tuple(value: Any) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        return (value,)
    return tuple(value)


def _non_negative(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value < 0:
        raise DefinitionError(f"RetryPolicy({attribute.name}=...) must be >= 0; got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Give a failing step ``max_retries`` more attempts.

    ``delay`` is the base wait in seconds; ``backoff`` grows it (linear:
    ``delay * n``; exponential: ``delay * (2**n - 1)``) and ``jitter`` spreads
    it (full: uniform in ``[0, d]``; plus-minus: ``d ± delay``).  Only
    exceptions matching ``retry_on`` are retried: a bug (say ``TypeError``)
    need not be tried five times when the policy is meant for network errors.
    """

    max_retries: int = attrs.field(default=1, validator=_non_negative)
    delay: float | None = attrs.field(default=None, validator=_non_negative)
    backoff: Backoff | None = None
    jitter: Jitter | None = None
    retry_on: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_to_tuple, validator=_check_retry_on
    )

    def __attrs_post_init__(self) -> None:
        # Backoff and jitter scale the delay: without one they would silently do nothing.
        for option, value in (("backoff", self.backoff), ("jitter", self.jitter)):
            if value is not None and not self.delay:
                raise DefinitionError(
                    f"RetryPolicy({option}={value}) needs a delay to act on; set "
                    f"delay=<seconds> (> 0) or leave {option} out"
                )

    def should_retry(self, exc: BaseException) -> bool:
        return isinstance(exc, self.retry_on)

    def delay_for(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        base = self.delay or 0.0
        if self.backoff is Backoff.EXPONENTIAL:
            value = ((2**attempt) - 1) * base
        elif self.backoff is Backoff.LINEAR:
            value = base * attempt
        else:
            value = base
        if rng is None:
            import random

            rng = random  # type: ignore[assignment]
        draw = rng.random  # type: ignore[union-attr]
        if self.jitter is Jitter.FULL:
            value = draw() * value
        elif self.jitter is Jitter.PLUS_MINUS:
            value = value + (2 * draw() * base) - base
        return max(0.0, value)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary, for events, spans and the UI."""
        return {
            "max_retries": self.max_retries,
            "delay": self.delay,
            "backoff": self.backoff.value if self.backoff else None,
            "jitter": self.jitter.value if self.jitter else None,
            "retry_on": [t.__qualname__ for t in self.retry_on],
        }


def _check_retry_policy(where: str, value: Any) -> None:
    """Refuse anything but a RetryPolicy or None where a solid or pipeline takes one.

    ``where`` names the argument (``"solid 'x': retry_policy"``), so the message says whose.
    """
    if value is not None and not isinstance(value, RetryPolicy):
        raise DefinitionError(f"{where} must be a RetryPolicy, got {value!r}")
