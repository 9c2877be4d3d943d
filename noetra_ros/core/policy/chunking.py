"""Action chunks in, one action per control tick out, without jumps at chunk switches.

With asynchronous inference a chunk arrives some time after the observation it was computed
from, while the previous chunk is still being executed. `ActionQueue` keeps the chunks that are
still useful and answers `action_at(t)` at control rate:

* `crossfade`: when a chunk becomes available the output fades linearly from what was being
  executed to the new chunk over `blend_window_s`. A chunk that runs out during a fade holds its
  last row, so the output never jumps.
* `ensemble` (ACT temporal ensembling): the chunks covering t are averaged with weight
  exp(-m * i), i = 0 for the oldest. Whenever that set changes (a chunk arrives or its horizon
  ends) the output fades linearly from the old average to the new one over `blend_window_s`,
  so it stays continuous (`blend_window_s = 0` gives the original scheme, which jumps).
* `rtc` (real-time chunking, after Black, Galliker, Levine 2025, "Real-Time Execution of Action
  Chunking Flow Policies", arXiv:2506.07339): the rows of a new chunk before its arrival are
  never used (the previous plan executed them: the paper's frozen prefix); from the arrival on
  the newest chunk alone is followed, corrected so that it starts at the position and with the
  velocity of the command being executed, the correction fading to zero over
  `rtc_horizon_s` (default `blend_window_s`) with the paper's exponential soft mask
  (`rtc_correction`). docs/REALTIME_CHUNKING.md.
* `replace`: the newest chunk wins at once (for comparison; jumps at every switch).

Row k of a chunk applies at stamp + k * step_period; between rows the value is interpolated
linearly (or held, `interpolate=False`). `action_at` returns None when nothing covers t: the
caller holds position. All times are seconds on one clock (the node's clock).
"""
from __future__ import annotations

from dataclasses import dataclass
import math
import threading

import numpy as np

from noetra_ros.core.errors import ConfigError, InputError

BLEND_STRATEGIES = ('crossfade', 'ensemble', 'rtc', 'replace')
# -dW/du at u = 0 of the exponential soft mask W(u) = c (e^c - 1) / (e - 1), c = 1 - u
# (rtc_correction): (2e - 1) / (e - 1).
_MASK_INITIAL_SLOPE = (2.0 * math.e - 1.0) / (math.e - 1.0)


def soft_mask(u: float) -> float:
    """RTC's exponential soft-mask weight at fraction u of the overlap: 1 at u = 0, 0 from u = 1.

    W = c (e^c - 1) / (e - 1) with c = 1 - u falling linearly, the weights the paper gives the
    previous chunk's actions between the frozen prefix and the end of the overlap (its soft
    masking, Section 4; LeRobot's RTCProcessor.get_prefix_weights, schedule EXP, computes the
    same). Its slope is 0 at u = 1, so a correction shaped by it ends without a velocity step.
    """
    if u <= 0.0:
        return 1.0
    if u >= 1.0:
        return 0.0
    c = 1.0 - u
    return c * math.expm1(c) / (math.e - 1.0)


def rtc_correction(tau: float, horizon: float, offset: np.ndarray,
                   slope: np.ndarray) -> np.ndarray:
    """What `rtc` adds to a new chunk tau seconds after it arrived.

    `offset`: executed command minus the new chunk at the arrival; `slope`: their velocity
    difference there (rad/s). The result starts at `offset` with slope `slope` (so the output
    keeps the executed position and velocity) and fades to 0 at `horizon` with zero slope:
    W(u) * (offset + tau * (slope + W0' / horizon * offset)), u = tau / horizon, W the soft
    mask and W0' = -dW/du(0) cancelling the mask's own initial slope. tau < 0 (before the
    arrival) extends the start linearly; horizon 0 is no correction.
    """
    if tau <= 0.0:
        return offset + tau * slope
    if tau >= horizon:
        return np.zeros_like(offset)
    return soft_mask(tau / horizon) * (
        offset + tau * (slope + (_MASK_INITIAL_SLOPE / horizon) * offset))


@dataclass(frozen=True)
class BlendConfig:
    """How overlapping chunks are combined.

    strategy: one of BLEND_STRATEGIES. blend_window_s: duration of the fade to a new chunk
    (crossfade) or to a new set of averaged chunks (ensemble), and rtc's correction horizon
    unless rtc_horizon_s sets it; 0 = switch at once. ensemble_coeff: ACT's m (0.01 in ACT;
    > 0 favours older chunks, < 0 newer). rtc_horizon_s: rtc only, how long a new chunk's
    correction lasts (0 = blend_window_s). interpolate: linear between rows, else hold each
    row for one step. max_chunks: older chunks beyond this are evicted (an evicted chunk still
    in use makes the output jump: size it to cover chunk horizon / inference period).
    """

    strategy: str = 'crossfade'
    blend_window_s: float = 0.1
    ensemble_coeff: float = 0.01
    interpolate: bool = True
    max_chunks: int = 64
    rtc_horizon_s: float = 0.0

    def __post_init__(self) -> None:
        if self.strategy not in BLEND_STRATEGIES:
            raise ConfigError(f'strategy {self.strategy!r} is not known (valid: '
                              f'{", ".join(BLEND_STRATEGIES)})')
        for name in ('blend_window_s', 'rtc_horizon_s'):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value < 0):
                raise ConfigError(f'{name} must be a finite number >= 0, got {value!r}')
        if (isinstance(self.ensemble_coeff, bool)
                or not isinstance(self.ensemble_coeff, (int, float))
                or not math.isfinite(self.ensemble_coeff)):
            raise ConfigError(f'ensemble_coeff must be a finite number, got '
                              f'{self.ensemble_coeff!r}')
        if not isinstance(self.interpolate, bool):
            raise ConfigError(f'interpolate must be a bool, got {self.interpolate!r}')
        if isinstance(self.max_chunks, bool) or not isinstance(self.max_chunks, int) \
                or not 1 <= self.max_chunks <= 10000:
            raise ConfigError(f'max_chunks must be an integer in [1, 10000], got '
                              f'{self.max_chunks!r}')

    @property
    def rtc_horizon(self) -> float:
        """Seconds over which rtc's correction of a new chunk fades out."""
        return self.rtc_horizon_s if self.rtc_horizon_s > 0.0 else self.blend_window_s

    @property
    def influence_window(self) -> float:
        """How long after a newer chunk started an older one can still shape the output."""
        if self.strategy == 'replace':
            return 0.0
        return self.rtc_horizon if self.strategy == 'rtc' else self.blend_window_s


class _Chunk:
    __slots__ = ('values', 'stamp', 'dt', 'start', 'seq', 'end', 'correction')

    def __init__(self, values: np.ndarray, stamp: float, dt: float, start: float, seq: int,
                 interpolate: bool) -> None:
        self.values = values
        self.stamp = stamp
        self.dt = dt
        self.start = start  # when the chunk may first influence the output (arrival)
        self.seq = seq
        steps = values.shape[0]
        # Interpolation needs a following row; holding keeps the last row for one more step.
        self.end = stamp + ((steps - 1) * dt if interpolate else steps * dt)
        # rtc: (offset, slope, horizon) of rtc_correction, set on arrival; None = none.
        self.correction: tuple[np.ndarray, np.ndarray, float] | None = None

    def covers(self, t: float, interpolate: bool) -> bool:
        if t < self.stamp:
            return False
        return t <= self.end if interpolate else t < self.end

    def sample(self, t: float, interpolate: bool) -> np.ndarray:
        """Value at t; clamped to the first / last row outside the horizon."""
        steps = self.values.shape[0]
        u = (t - self.stamp) / self.dt
        if u <= 0.0:
            return self.values[0]
        # A tiny bias so that t == stamp + k*dt computed in floats lands on row k, not k - 1.
        k = int(math.floor(u + 1e-9))
        if k >= steps - 1:
            return self.values[steps - 1]
        if not interpolate:
            return self.values[k]
        frac = min(max(u - k, 0.0), 1.0)
        return self.values[k] + frac * (self.values[k + 1] - self.values[k])

    def corrected(self, t: float, interpolate: bool) -> np.ndarray:
        """rtc's output while this chunk is the newest: the sample plus its correction."""
        value = self.sample(t, interpolate)
        if self.correction is None:
            return value
        offset, slope, horizon = self.correction
        return value + rtc_correction(t - self.start, horizon, offset, slope)


class ActionQueue:
    """Thread-safe store of action chunks that blends them into one action per tick."""

    def __init__(self, config: BlendConfig | None = None) -> None:
        """Empty queue using `config` (defaults: crossfade over 0.1 s, linear interpolation)."""
        self._config = config or BlendConfig()
        self._chunks: list[_Chunk] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._width: int | None = None
        self._last_t = -math.inf
        self._stack_key: tuple[int, ...] | None = None
        self._stack: tuple[np.ndarray, ...] = ()
        self.added = 0
        self.expired_on_arrival = 0
        self.evicted = 0

    @property
    def config(self) -> BlendConfig:
        """The blending configuration."""
        return self._config

    def __len__(self) -> int:
        with self._lock:
            return len(self._chunks)

    def clear(self) -> None:
        """Forget every chunk (e.g. when the policy is disarmed); the next action is None."""
        with self._lock:
            self._chunks.clear()
            self._width = None

    def add(self, values: np.ndarray, stamp: float, step_period_s: float,
            now: float | None = None) -> bool:
        """Queue a chunk (T, A) whose row 0 applies at `stamp` (the observation time).

        `now` is when the chunk became available (defaults to the later of `stamp` and the last
        time asked for); blending starts there. Returns False when the chunk's horizon already
        ended (it is dropped). Raises InputError for a malformed chunk (not 2-D, non-finite,
        a column count different from the queued chunks).
        """
        array = np.array(values, dtype=np.float64)  # a private copy: callers may reuse theirs
        if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
            raise InputError(f'an action chunk must be a (T, A) array, got shape {array.shape}')
        if not np.isfinite(array).all():
            raise InputError('action chunk has non-finite values; it was not queued')
        for label, value in (('stamp', stamp), ('step_period_s', step_period_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise InputError(f'{label} must be a finite number, got {value!r}')
        if step_period_s <= 0:
            raise InputError(f'step_period_s must be > 0, got {step_period_s}')
        interpolate = self._config.interpolate
        with self._lock:
            if self._width is not None and self._chunks and array.shape[1] != self._width:
                raise InputError(f'action chunk has {array.shape[1]} columns, the queued chunks '
                                 f'have {self._width}')
            arrival = max(float(stamp), self._last_t) if now is None else float(now)
            chunk = _Chunk(array, float(stamp), float(step_period_s),
                           max(arrival, float(stamp)), self._seq, interpolate)
            if chunk.end < arrival or (not interpolate and chunk.end <= arrival):
                self.expired_on_arrival += 1
                return False
            if self._config.strategy == 'rtc':
                self._attach_correction(chunk)
            self._seq += 1
            self._width = array.shape[1]
            self._chunks.append(chunk)
            self.added += 1
            while len(self._chunks) > self._config.max_chunks:
                self._chunks.pop(0)
                self.evicted += 1
            return True

    def time_remaining(self, t: float) -> float:
        """Seconds of action left after t (0 when the queue is dry): ask for the next
        inference when this drops below the expected inference latency."""
        with self._lock:
            if not self._chunks:
                return 0.0
            return max(0.0, max(c.end for c in self._chunks) - t)

    def observation_span(self, t: float) -> tuple[float, float] | None:
        """(oldest, newest) observation stamps of the chunks that can shape the action at t:
        those that have started and whose horizon had not ended one blend window before t (a
        superset of the ones blended, so an audit never misses an input). None: no chunk."""
        window = self._config.influence_window
        with self._lock:
            stamps = [c.stamp for c in self._chunks if c.start <= t and c.end >= t - window]
        return (min(stamps), max(stamps)) if stamps else None

    def action_at(self, t: float) -> np.ndarray | None:
        """The blended action (A,) at time t, or None when no chunk covers t (hold)."""
        with self._lock:
            self._last_t = max(self._last_t, t)
            if self._config.strategy == 'ensemble':
                result = self._ensemble(t)
            elif self._config.strategy == 'rtc':
                result = self._rtc(t)
            else:
                result = self._crossfade(t)
            return None if result is None else np.array(result, dtype=np.float64)

    def _crossfade(self, t: float) -> np.ndarray | None:
        interpolate = self._config.interpolate
        window = 0.0 if self._config.strategy == 'replace' else self._config.blend_window_s
        active = [c for c in self._chunks if c.start <= t]
        if not active:
            return None

        def alpha(chunk: _Chunk) -> float:
            if window <= 0.0:
                return 1.0
            return min(max((t - chunk.start) / window, 0.0), 1.0)

        # The newest chunk that has fully faded in is the base; older ones can never matter
        # again because the output at later times is built from the base onwards.
        base = 0
        for i in range(len(active) - 1, 0, -1):
            if alpha(active[i]) >= 1.0:
                base = i
                break
        stale = active[:base]
        if stale:
            self._chunks = [c for c in self._chunks if c not in stale]
        active = active[base:]
        if not any(c.covers(t, interpolate) for c in active):
            # Every horizon has passed (e.g. inference stalled): never replay stale targets.
            self._chunks = [c for c in self._chunks if c not in active]
            return None
        output = active[0].sample(t, interpolate)
        for chunk in active[1:]:
            a = alpha(chunk)
            output = (1.0 - a) * output + a * chunk.sample(t, interpolate)
        return output

    def _newest_started(self, t: float) -> _Chunk | None:
        started = [c for c in self._chunks if c.start <= t]
        return max(started, key=lambda c: (c.start, c.seq)) if started else None

    def _attach_correction(self, chunk: _Chunk) -> None:
        """rtc: make `chunk` start from the command being executed at its arrival.

        That command is the newest earlier chunk's corrected output; once it has run out (the
        queue went dry: nothing was commanded and the robot kept its last target) it is that
        chunk's last row, still, with zero velocity. Velocities are differences over one row
        period: backwards for what was executed, forwards for the new chunk (its rows before
        the arrival are never used). No earlier chunk (first chunk, after clear()): none.

        The correction ends by the chunk's last row at the latest: a chunk that arrives with
        little left (inference almost as long as the chunk) would otherwise run out while
        still held back towards the old command and the arm would barely move between chunks.
        """
        now, h = chunk.start, chunk.dt
        previous = self._newest_started(now)
        horizon = min(self._config.rtc_horizon, chunk.end - now)
        if previous is None or horizon <= 0.0:
            return
        interpolate = self._config.interpolate
        here = previous.corrected(min(now, previous.end), interpolate)
        before = previous.corrected(min(now - h, previous.end), interpolate)
        new_here = chunk.sample(now, interpolate)
        new_velocity = (chunk.sample(now + h, interpolate) - new_here) / h
        chunk.correction = (here - new_here, (here - before) / h - new_velocity, horizon)

    def _rtc(self, t: float) -> np.ndarray | None:
        # The newest chunk that has arrived is followed alone: its correction already carries
        # what the earlier ones were doing, so they can never matter again. A newest chunk
        # whose horizon has passed gives None (hold) but stays as the reference the next
        # chunk's correction starts from.
        base = self._newest_started(t)
        if base is None:
            return None
        if len(self._chunks) > 1:
            self._chunks = [c for c in self._chunks if c is base or c.start > t]
        if not base.covers(t, self._config.interpolate):
            return None
        return base.corrected(t, self._config.interpolate)

    def _stacked(self) -> tuple[np.ndarray, ...]:
        """All chunks as padded arrays, rebuilt only when the chunk list changed; lets the
        ensemble sample a hundred chunks per tick with a few numpy calls."""
        key = tuple(c.seq for c in self._chunks)
        if self._stack_key != key:
            steps = np.array([c.values.shape[0] for c in self._chunks])
            width = self._chunks[0].values.shape[1]
            values = np.empty((len(self._chunks), int(steps.max()), width))
            for i, chunk in enumerate(self._chunks):
                values[i, :steps[i]] = chunk.values
                values[i, steps[i]:] = chunk.values[-1]
            self._stack = (values, steps,
                           np.array([c.stamp for c in self._chunks]),
                           np.array([c.dt for c in self._chunks]),
                           np.array([c.start for c in self._chunks]),
                           np.array([c.end for c in self._chunks]),
                           np.array([c.seq for c in self._chunks], dtype=np.float64))
            self._stack_key = key
        return self._stack

    def _ensemble(self, t: float) -> np.ndarray | None:
        # The set of chunks being averaged changes when a chunk arrives or its horizon ends.
        # Each change starts a linear fade, over blend_window_s, from the previous average to
        # the new one (chunks that just ended hold their last row during that fade), so the
        # output stays continuous however the events fall. Within one set the weights are
        # ACT's: exp(-m * i), i = 0 for the oldest. blend_window_s = 0 is plain ACT.
        window = self._config.blend_window_s
        if not self._chunks:
            return None
        values, steps, stamps, dts, starts, ends, seqs = self._stacked()
        started = starts <= t
        if not started.any():
            return None
        events = np.unique(np.concatenate([starts[started], ends[started & (ends <= t)]]))
        settled = np.nonzero(events <= t - window)[0]
        base = int(settled[-1]) if settled.size else 0
        # Chunks that ended before the base event can never matter again.
        if (ends < events[base]).any():
            self._chunks = [c for c in self._chunks if not c.end < events[base]]
            values, steps, stamps, dts, starts, ends, seqs = self._stacked()
        # Sample every chunk at t once (clamped to its first / last row).
        u = np.maximum((t - stamps) / dts, 0.0)
        row = np.minimum(np.floor(u + 1e-9).astype(np.int64), steps - 1)
        following = np.minimum(row + 1, steps - 1)
        index = np.arange(len(steps))
        samples = values[index, row]
        if self._config.interpolate:
            frac = np.clip(u - row, 0.0, 1.0)[:, None]
            samples = samples + frac * (values[index, following] - samples)
        output: np.ndarray | None = None
        for event in events[base:]:
            members = (starts <= event) & (event < ends)
            if not members.any():
                output = None  # every horizon ended: dry; a later chunk starts afresh
                continue
            weights = np.exp(-self._config.ensemble_coeff
                             * (seqs[members] - seqs[members].min()))
            value = weights @ samples[members] / weights.sum()
            if output is None:
                output = value
            else:
                alpha = 1.0 if window <= 0.0 else min(max((t - event) / window, 0.0), 1.0)
                output = (1.0 - alpha) * output + alpha * value
        return output
