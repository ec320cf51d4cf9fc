"""Whether one more row keeps every row real time, from what the engine's steps have cost.

Each step of an engine makes one frame of audio (80 ms) for every row it holds, so a batch stays
real time while a step takes less than a frame. `StepCost` learns a step's seconds for each number
of rows from the steps themselves (a moving average per row count). A count beyond those seen is
guessed on the line through the two largest seen (what a step costs whatever its rows, plus what
each row adds: a DSM batch costs nearly the same with few rows as with many, a Pocket TTS batch
grows with its rows); with one count seen, as if each row cost the same, which errs on the side
of waiting. The scheduler admits a new row only while the step it would
make is predicted under a frame divided by the margin; the others wait in arrival order, so that
the streams already playing never run dry. Kyutai's servers size a fixed number of slots for the
hardware; this sizes them from the hardware as it runs, and follows a machine that gets busier.
"""

from __future__ import annotations

import threading


class StepCost:
    """Seconds per step by number of rows: a moving average per count, learnt as steps run.

    A count not run for `memory` steps is forgotten while others are fresh: a cost measured once
    in a burst, or when the machine was busier, would otherwise hold the batch below that count
    for good, since the count is never run again to correct it."""

    def __init__(self, smoothing: float = 0.2, memory: int = 400):
        self.smoothing = smoothing
        self.memory = memory
        self._seconds: dict[int, float] = {}
        self._seen_at: dict[int, int] = {}  # the step at which each count was last run
        self._steps = 0
        self._lock = threading.Lock()

    def record(self, rows: int, seconds: float) -> None:
        if rows <= 0:
            return
        with self._lock:
            self._steps += 1
            old = self._seconds.get(rows)
            if old is not None and self._steps - self._seen_at[rows] > self.memory:
                old = None  # forgotten: it starts anew
            self._seconds[rows] = seconds if old is None else old + self.smoothing * (seconds - old)
            self._seen_at[rows] = self._steps

    def knows(self, rows: int) -> bool:
        """Whether steps with `rows` rows were measured lately (within `memory` steps)."""
        with self._lock:
            return rows in self._seen_at and self._steps - self._seen_at[rows] <= self.memory

    def _fresh(self) -> dict[int, float]:
        return {count: seconds for count, seconds in self._seconds.items()
                if self._steps - self._seen_at[count] <= self.memory} or dict(self._seconds)

    def upper(self, rows: int) -> float | None:
        """A step's seconds with `rows` rows at worst: as if each row cost as much as in the largest
        batch measured below it (batches cost less per row, not more, as they grow)."""
        with self._lock:
            seen = self._fresh()
            smaller = [count for count in seen if count < rows]
        if rows in seen or not smaller:
            return self.predict(rows)
        return seen[max(smaller)] * rows / max(smaller)

    def predict(self, rows: int) -> float | None:
        """A step's seconds with `rows` rows; None before any step was seen."""
        with self._lock:
            seen = self._fresh()
            if rows in seen:
                return seen[rows]
            smaller = sorted(count for count in seen if count < rows)
            if len(smaller) >= 2:
                below, top = smaller[-2], smaller[-1]
                per_row = max((seen[top] - seen[below]) / (top - below), seen[top] / top / 4)
                return seen[top] + per_row * (rows - top)
            if smaller:
                return seen[smaller[-1]] * rows / smaller[-1]
            larger = [count for count in seen if count > rows]
            return seen[min(larger)] if larger else None


def headroom(cost: StepCost, rows: int, frame_seconds: float) -> float | None:
    """How many times faster than real time a step with `rows` rows runs (1.0: just real time)."""
    seconds = cost.predict(rows) if rows else None
    return frame_seconds / seconds if seconds else None


def room_for_one_more(cost: StepCost, rows: int, frame_seconds: float, margin: float,
                      measured: bool = True) -> bool:
    """Whether a row may join `rows` others and every row still run `margin` times real time.

    A lone row always may (nothing else is playing); so may any row while no step was measured yet
    (a burst that comes first is let in whole, as without a margin). While the batch's present
    size is not `measured`, the guess is the worst case (`StepCost.upper`)."""
    if margin <= 0 or rows == 0:
        return True
    seconds = cost.predict(rows + 1) if measured else cost.upper(rows + 1)
    return seconds is None or seconds * margin <= frame_seconds


def rows_in_real_time(cost: StepCost, frame_seconds: float, margin: float, limit: int) -> int:
    """How many rows (at most `limit`, at least one) run `margin` times real time together."""
    rows = 1
    while rows < limit and room_for_one_more(cost, rows, frame_seconds, margin):
        rows += 1
    return rows


class CycleCost:
    """A step's cost recorded as the mean over each cycle of steps run with the same rows.

    An engine whose steps differ within a cycle (Pocket TTS decodes audio every few steps) would
    look cheap on its light steps; until a row count has a cost, or has run a whole cycle, a new row
    joins only if even the worst case keeps real time."""

    def __init__(self, cost: StepCost, steps_per_cycle: int = 1):
        self.cost = cost
        self.steps_per_cycle = steps_per_cycle
        self._cycle = (0, 0.0, 0)  # rows, seconds and steps since the row count last changed or was recorded
        self._steps_at_rows = 0  # steps run since the row count last changed

    def settled(self, rows: int) -> bool:
        """Whether a batch of `rows` has a measured cost to admit by: lately, or a whole cycle of steps."""
        return self.cost.knows(rows) or (rows == self._cycle[0] and self._steps_at_rows >= self.steps_per_cycle)

    def measured(self, rows: int, seconds: float) -> None:
        counted_rows, total, steps = self._cycle
        if rows != counted_rows:
            counted_rows, total, steps = rows, 0.0, 0
            self._steps_at_rows = 0
        total, steps = total + seconds, steps + 1
        self._steps_at_rows += 1
        if steps >= self.steps_per_cycle:
            self.cost.record(rows, total / steps)
            total, steps = 0.0, 0
        self._cycle = (counted_rows, total, steps)
