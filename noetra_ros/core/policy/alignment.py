"""Aligning multimodal inputs (cameras, joint state, wrench) by header stamp.

Each source keeps a short history of (stamp, value). For a reference stamp (the joint state the
policy acts on) every required source must have a sample within `tolerance_s` of it, and the
reference itself must be younger than `max_age_s` on the node clock: a command is never built
from stale data. The reason a set cannot be aligned is returned so the node can say it.

`same_stamp` pairs a source with another whose capture it shares (a camera's aligned depth with
its colour image: realsense2_camera stamps both with the colour frame's time). The pair is
chosen together - the colour sample nearest the reference that has a depth sample of exactly
its stamp - so the two are always one capture. When no such pair exists although a follower
sample at or after the colour stamp has arrived (so the twin will never come), the alignment
fails with `unpaired` naming the follower: inputs that claim to be one capture and are not.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math
from typing import Any, Iterable, Mapping

from noetra_ros.core.errors import ConfigError


@dataclass(frozen=True)
class Sample:
    stamp: float      # header stamp, seconds on the producer's clock (sim or wall)
    received: float   # wall-clock receipt time (time.perf_counter), for latency figures
    value: Any


@dataclass(frozen=True)
class Alignment:
    samples: dict[str, Sample] | None
    reason: str = ''
    # same_stamp followers whose twin of the leader's stamp never came (a capture mismatch).
    unpaired: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.samples is not None


class InputAligner:
    def __init__(self, sources: Iterable[str], reference: str, tolerance_s: float,
                 max_age_s: float, history: int = 8,
                 same_stamp: Mapping[str, str] | None = None) -> None:
        """`same_stamp` maps a follower source to its leader: the follower's sample must carry
        exactly the stamp of the leader's (module docstring)."""
        self.sources = tuple(sources)
        if reference not in self.sources:
            raise ConfigError(f'reference source {reference!r} is not among {self.sources}')
        self.same_stamp = dict(same_stamp or {})
        for follower, leader in self.same_stamp.items():
            if follower not in self.sources or leader not in self.sources:
                raise ConfigError(f'same_stamp pair {follower!r} -> {leader!r}: both must be '
                                  f'among {self.sources}')
            if reference in (follower, leader) or leader in self.same_stamp:
                raise ConfigError(f'same_stamp pair {follower!r} -> {leader!r}: the reference '
                                  'cannot be paired and a leader cannot follow another')
        if not tolerance_s >= 0 or not math.isfinite(tolerance_s):
            raise ConfigError(f'stamp tolerance must be a finite value >= 0, got {tolerance_s}')
        if not max_age_s > 0:
            raise ConfigError(f'max input age must be > 0, got {max_age_s}')
        self.reference = reference
        self.tolerance_s = tolerance_s
        self.max_age_s = max_age_s
        self._history: dict[str, deque[Sample]] = {s: deque(maxlen=history)
                                                   for s in self.sources}

    def add(self, source: str, stamp: float, received: float, value: Any) -> None:
        self._history[source].append(Sample(stamp, received, value))

    def latest(self, source: str) -> Sample | None:
        history = self._history[source]
        return history[-1] if history else None

    def clear(self) -> None:
        for history in self._history.values():
            history.clear()

    def stale_sources(self, now: float) -> list[str]:
        """Sources with no sample, or whose newest sample is older than max_age_s."""
        stale = []
        for source, history in self._history.items():
            if not history or now - history[-1].stamp > self.max_age_s:
                stale.append(source)
        return stale

    def align(self, now: float, reference_stamp: float | None = None) -> Alignment:
        """Samples of every source nearest to the reference stamp (newest reference if None)."""
        ref_history = self._history[self.reference]
        if not ref_history:
            return Alignment(None, f'no {self.reference} received yet')
        if reference_stamp is None:
            ref = ref_history[-1]
        else:
            found = next((s for s in reversed(ref_history) if s.stamp == reference_stamp), None)
            if found is None:
                return Alignment(None, f'{self.reference} at {reference_stamp:.3f} s is gone')
            ref = found
        age = now - ref.stamp
        if age > self.max_age_s:
            return Alignment(None, f'{self.reference} is stale: {age:.3f} s old '
                                   f'(max_input_age_s {self.max_age_s})')
        if age < -self.tolerance_s:
            return Alignment(None, f'{self.reference} stamp is {-age:.3f} s in the future')
        chosen = {self.reference: ref}
        followers: dict[str, list[str]] = {}
        for follower, leader in self.same_stamp.items():
            followers.setdefault(leader, []).append(follower)
        for source in self.sources:
            if source == self.reference or source in self.same_stamp:
                continue
            history = self._history[source]
            if not history:
                return Alignment(None, f'no {source} received yet')
            best = min(history, key=lambda s: abs(s.stamp - ref.stamp))
            offset = best.stamp - ref.stamp
            if abs(offset) > self.tolerance_s:
                return Alignment(None, f'{source} is {offset:+.3f} s from {self.reference} '
                                       f'(stamp_tolerance_s {self.tolerance_s})')
            if source not in followers:
                chosen[source] = best
                continue
            paired = self._pair(source, followers[source], ref.stamp, best)
            if isinstance(paired, Alignment):
                return paired
            chosen.update(paired)
        return Alignment(chosen)

    def _pair(self, leader: str, followers: list[str], reference_stamp: float,
              nearest: Sample) -> dict[str, Sample] | Alignment:
        """The leader sample nearest the reference (within tolerance) whose followers all have
        a sample of exactly its stamp, with those samples; else why not."""
        for follower in followers:
            if not self._history[follower]:
                return Alignment(None, f'no {follower} received yet')
        candidates = sorted((s for s in self._history[leader]
                             if abs(s.stamp - reference_stamp) <= self.tolerance_s),
                            key=lambda s: abs(s.stamp - reference_stamp))
        for candidate in candidates:
            twins = {f: next((s for s in self._history[f] if s.stamp == candidate.stamp), None)
                     for f in followers}
            found = {f: twin for f, twin in twins.items() if twin is not None}
            if len(found) == len(twins):
                return {leader: candidate, **found}
        # Not one leader sample within tolerance has its twins: either a twin is still on its
        # way (the follower has nothing at or after the leader's stamp yet), or it never comes.
        unpaired = tuple(f for f in followers
                         if self._history[f][-1].stamp >= nearest.stamp)
        if not unpaired:
            return Alignment(None, f'waiting for {", ".join(followers)} of {leader} at '
                                   f'{nearest.stamp:.6f} s')
        details = []
        for follower in unpaired:
            closest = min(self._history[follower], key=lambda s: abs(s.stamp - nearest.stamp))
            details.append(f'{follower} has no frame stamped {nearest.stamp:.6f} s like '
                           f'{leader} (nearest {closest.stamp - nearest.stamp:+.6f} s)')
        return Alignment(None, f'{"; ".join(details)}: not the same capture, observation not '
                               'used', unpaired=unpaired)
