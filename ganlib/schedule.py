"""The automatic v2.2 loss schedule ("Loss function automation", reference §4.3) as pure functions.

Each phase starts at a trigger iteration given as a fraction of the schedule's total T, offset by
``-display_iters // 2`` (v2.2: -150) so that its on-disk weights were at most 150 iterations old when it
rebuilt its session. Phase flags are a pure function of the step, so a run resumed anywhere lands in
the right phase. The decoder swap is a one-time event; the trainer records it in ``events_done``.
"""
from __future__ import annotations

from dataclasses import dataclass

#: (trigger as a function of T, use_PL, use_mask_hinge_loss, m_mask, lr_factor, event)
_TRAIN_NB = [
    (lambda T: 0, False, False, 0.0, 1.0, None),
    (lambda T: T // 5, True, False, 0.0, 1.0, None),
    (lambda T: T // 5 + T // 10, True, True, 0.5, 1.0, None),
    (lambda T: 2 * T // 5, True, True, 0.2, 1.0, None),
    (lambda T: T // 2, True, True, 0.4, 1.0, None),
    (lambda T: 2 * T // 3, True, False, 0.0, 0.3, None),
    (lambda T: 8 * T // 10, True, True, 0.1, 0.3, "swap_decoders"),
    (lambda T: 9 * T // 10, True, False, 0.0, 0.1, None),
]
_COLAB = [
    (lambda T: 0, False, False, 0.0, 1.0, None),
    (lambda T: T // 5, True, False, 0.0, 1.0, None),
    (lambda T: T // 5 + T // 10, True, True, 0.5, 1.0, None),
    (lambda T: 2 * T // 5, True, True, 0.2, 1.0, None),
    (lambda T: T // 2, True, True, 0.4, 0.3, None),  # lr 0.3 here, unlike the train notebook
    (lambda T: 2 * T // 3, True, True, 0.5, 1.0, "swap_decoders"),  # the Colab demo swaps earlier
    (lambda T: 8 * T // 10, True, True, 0.1, 0.3, None),
    (lambda T: 9 * T // 10, True, False, 0.0, 0.1, None),
]
SCHEDULES = {"v22_train": _TRAIN_NB, "v22_colab": _COLAB}


@dataclass(frozen=True)
class Phase:
    index: int
    start: int
    use_PL: bool
    use_mask_hinge_loss: bool
    m_mask: float
    lr_factor: float
    event: str | None

    def flags(self) -> dict:
        return {"use_PL": self.use_PL, "use_mask_hinge_loss": self.use_mask_hinge_loss,
                "m_mask": self.m_mask, "lr_factor": self.lr_factor}


def phases(kind: str, total: int, display_iters: int = 300) -> list[Phase]:
    """All phases of schedule ``kind`` laid out for ``total`` iterations."""
    try:
        table = SCHEDULES[kind]
    except KeyError:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {sorted(SCHEDULES)}") from None
    offset = display_iters // 2
    out = []
    for i, (trig, pl, hinge, m, lr, ev) in enumerate(table):
        start = 0 if i == 0 else max(0, trig(total) - offset)
        out.append(Phase(i, start, pl, hinge, m, lr, ev))
    return out


def phase_at(step: int, kind: str, total: int, display_iters: int = 300) -> Phase:
    """The phase in force for the iteration that begins after ``step`` completed iterations."""
    current = None
    for p in phases(kind, total, display_iters):
        if step >= p.start:
            current = p
    return current


def events_due(step: int, kind: str, total: int, done: list[str], display_iters: int = 300) -> list[str]:
    """One-time events whose trigger is at or before ``step`` and which are not in ``done``."""
    due = []
    for p in phases(kind, total, display_iters):
        if p.event and step >= p.start:
            key = f"{p.event}@{p.start}"
            if key not in done:
                due.append(key)
    return due
