"""Shadow mode without ROS: a policy's would-be commands next to the controller that drives.

In a shadow cell (config/cells/pick_place_lrmate_policy_shadow.yaml, docs/SHADOW.md) one
controller drives the robot through the safety supervisor (the scripted expert, an operator)
while a policy runs on the same live inputs; its commands go to `shadow/*` topics, a second
safety node judges them without driving anything (safety_node `judge_only`), and shadow_node
compares. This module holds the rules both use.

**Which step an answer belongs to** (`AnswerPlacer`). A command source answers a joint_states
message. A stamped answer (a JointTrajectory: the policy stamps it with its observation, which
in lockstep is the joint_states stamp itself) belongs to the newest joint_states stamped at or
before it; when that state has not been heard yet the answer waits for it, so an answer that
arrives before its state, or after later states, still lands on its step. An unstamped answer
(std_msgs/Float64MultiArray) belongs to the last joint_states received before it, as
`noetra convert` places commands (learning/convert.py): in a lockstep cell the driving
controller's answer to step k always comes before step k+1, which the sim publishes only once
that answer has gone through the supervisor. A gripper command (unstamped) goes with the next
arm command of its source: the expert and the policy both publish the gripper first.

**The judge's steps** (`JudgeSteps`): the judge cycles once per joint_states stamp, in stamp
order, with the answer placed on that step - not when messages happen to arrive. The sim does
not wait for the shadow policy, so its answer to step k may come after step k+1 or later; the
judge waits for it (at most `wait_s` of wall time), and judges a step without an answer when
the source answered a later step instead (it skipped this one) or stayed silent.

**Per episode** (`ShadowComparator`, `episode_report`): for every step of the episode that both
the driving controller and the shadow source answered, the joint-space error (L2 norm over the
arm joints and the largest absolute joint error, rad), their p50 / p95 / max and the series
itself (at most `max_series_hz` samples a second, each the largest error of its interval); the
fraction of steps where the two grippers disagree about open / closed; the same error for the
judge's output (what the supervisor would have sent); and the judge's would-be interventions
from its audit trail (core/audit.py), by decision and reason, per minute.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field, replace
import math
from typing import Any, Mapping, Sequence

import numpy as np

from noetra_ros.core import audit
from noetra_ros.core.errors import ConfigError
from noetra_ros.core.recording import EpisodeEnd, EpisodeInfo, EpisodeSegmenter
from noetra_ros.core.safety.cell import TRACKING_FAULT

# Topics of a shadow cell (relative names; the cell remaps the sources onto them).
SHADOW_POSITION_TOPIC = 'shadow/position_commands'
SHADOW_TRAJECTORY_TOPIC = 'shadow/joint_trajectory'
SHADOW_GRIPPER_TOPIC = 'shadow/gripper_commands'
JUDGED_ARM_TOPIC = 'shadow/judged/joint_commands'
JUDGED_GRIPPER_TOPIC = 'shadow/judged/gripper_commands'
JUDGE_AUDIT_TOPIC = 'shadow/safety/audit'
REPORT_TOPIC = 'shadow/episode_report'
# The `via` of the audit record a judge writes when it arms itself (where an operator would have
# had to arm the supervisor had the policy driven).
JUDGE_AUTO_ARM_VIA = 'judge_only auto-arm'

DRIVING, SHADOW, JUDGED = 'driving', 'shadow', 'judged'
# What the shadow source is compared with: the driving controller's commands, or (an operator's
# teach pendant: no command on ROS) the position the arm was measured at one step later.
REFERENCES = ('command', 'measured')
# Where episodes come from: the sim's task/status, or fixed windows of the cell clock (a real
# cell has no task checker); auto = task/status on sim time, windows on the wall clock.
EPISODE_SOURCES = ('auto', 'task_status', 'window')
DEFAULT_MAX_SERIES_HZ = 20.0
# Steps remembered for placing answers (25 s at 500 Hz); stamped answers waiting for their
# state, at most.
STEP_HISTORY = 12500
MAX_WAITING_ANSWERS = 100
# The audit trail times a cycle in float seconds (core/audit.py), which carry a wall-clock stamp
# to a fraction of a microsecond: a record is on a step within this much (steps are >= 1 ms
# apart, so no record is ever taken for a neighbouring step).
STAMP_TOLERANCE_NS = 1_000


@dataclass(frozen=True)
class Answer:
    """A command source's answer to the joint_states stamped `step_ns`: its arm command (any
    payload: a vector, a SafetyCell command), when its source sent it (DDS source timestamp, ns;
    None: unknown) and, once resolved (`AnswerPlacer.with_gripper`), the gripper command in
    force with it."""

    step_ns: int
    command: Any
    sent_ns: int | None = None
    gripper: Any = None
    handled: int = 0  # the placer's count of messages handled when this one was


class AnswerPlacer:
    """Puts one command source's answers on the joint_states step they answer (module doc).

    Messages may be handled in another order than they were sent (an executor serves the
    subscriptions of one wake-up in its own order), so an unstamped answer is placed by the DDS
    source timestamps of the answer and of the states (the clocks of the machines that sent
    them): on the last state sent before it, once a state sent after it is known. Without
    source timestamps it goes on the last state handled. The gripper command in force with an
    arm answer is the last one its source sent before that answer."""

    def __init__(self, history: int = STEP_HISTORY) -> None:
        self._steps: list[int] = []
        self._sent: list[int] = []  # source timestamps of the states (0: unknown)
        self._history = history
        self._waiting: list[tuple[str, int, Any, int | None, int]] = []  # (key kind, key, ..)
        self._grippers: list[tuple[int, int, Any]] = []  # (source timestamp or 0, handled, value)
        self._handled = 0
        self.dropped = 0  # answers no remembered step can take

    def joint_state(self, stamp_ns: int, sent_ns: int | None = None) -> list[Answer]:
        """A new state; returns the waiting answers it settles (a repeated or older stamp is no
        new step)."""
        if self._steps and stamp_ns <= self._steps[-1]:
            return []
        self._steps.append(stamp_ns)
        self._sent.append(sent_ns or 0)
        if len(self._steps) > 2 * self._history:
            del self._steps[:self._history]
            del self._sent[:self._history]
        waiting, self._waiting = self._waiting, []
        placed = []
        for kind, key, command, sent, handled in waiting:
            answer = self._place(kind, key, command, sent, handled)
            if answer is not None:
                placed.append(answer)
        return placed

    def gripper(self, value: Any, sent_ns: int | None = None) -> None:
        """A gripper command: in force with the arm answers its source sends after it."""
        self._handled += 1
        self._grippers.append((sent_ns or 0, self._handled, value))
        if len(self._grippers) > 2 * MAX_WAITING_ANSWERS:
            del self._grippers[:MAX_WAITING_ANSWERS]

    def with_gripper(self, answer: Answer) -> Answer:
        """`answer` with the gripper command in force when its source sent it (when either
        has no source timestamp: the last one handled before it; None: none yet)."""
        value = None
        for sent, handled, gripper in reversed(self._grippers):
            if (sent <= answer.sent_ns if sent and answer.sent_ns
                    else handled < answer.handled):
                value = gripper
                break
        return replace(answer, gripper=value)

    def unstamped(self, command: Any, sent_ns: int | None = None) -> Answer | None:
        """An answer without a stamp; None while it waits for a later state (or dropped)."""
        self._handled += 1
        if not sent_ns or not (self._sent and self._sent[-1]):
            if not self._steps:
                self.dropped += 1
                return None
            return Answer(self._steps[-1], command, sent_ns, handled=self._handled)
        return self._place('sent', sent_ns, command, sent_ns, self._handled)

    def stamped(self, stamp_ns: int, command: Any, sent_ns: int | None = None) -> Answer | None:
        """An answer stamped `stamp_ns`; None while it waits for a state at or after it."""
        self._handled += 1
        return self._place('stamp', stamp_ns, command, sent_ns, self._handled)

    def _place(self, kind: str, key: int, command: Any, sent: int | None,
               handled: int) -> Answer | None:
        """The step of an answer keyed by its stamp (the newest state stamped at or before it)
        or its source time (the last state sent before it), once a state at or after the key
        is known; until then it waits."""
        keys = self._steps if kind == 'stamp' else self._sent
        if not keys or key > keys[-1] or (kind == 'sent' and key == keys[-1]):
            self._waiting.append((kind, key, command, sent, handled))
            if len(self._waiting) > MAX_WAITING_ANSWERS:
                self._waiting.pop(0)
                self.dropped += 1
            return None
        index = (bisect_right(keys, key) if kind == 'stamp' else bisect_left(keys, key)) - 1
        if index < 0:
            self.dropped += 1
            return None
        return Answer(self._steps[index], command, sent, handled=handled)


# ---------------------------------------------------------------------------- the judge
@dataclass(frozen=True)
class JudgeStep:
    """One step for the judge: the measurement stamped `stamp_ns` and the source's answer to
    it (None: none came; the supervisor's command in force goes on until its timeout)."""

    stamp_ns: int
    measured: Any
    arm: Any = None
    gripper: Any = None


class JudgeSteps:
    """The judge's lockstep, keyed by joint_states stamps (module doc).

    `joint_state`, `answer`, `gripper` as messages arrive; `due(wall)` returns the steps to
    cycle now, oldest first. A step is due when its answer is in, when the source answered a
    later step, when it has waited `wait_s` (wall) or when more than `max_pending` steps wait.
    An answer to a step already judged is counted in `late_answers` and not used."""

    def __init__(self, wait_s: float, max_pending: int = 200) -> None:
        if not (math.isfinite(wait_s) and wait_s > 0.0) or max_pending < 1:
            raise ConfigError(f'judge steps: wait_s={wait_s!r} must be > 0 and max_pending='
                              f'{max_pending!r} >= 1')
        self.wait_s = wait_s
        self.max_pending = max_pending
        self.placer = AnswerPlacer()
        self._pending: dict[int, tuple[Any, float]] = {}
        self._answers: dict[int, Answer] = {}
        self._judged_through: int | None = None
        self.late_answers = 0
        self.unanswered = 0

    def joint_state(self, stamp_ns: int, measured: Any, wall: float,
                    sent_ns: int | None = None) -> None:
        """A measurement (`sent_ns`: its DDS source timestamp, None unknown)."""
        if self._judged_through is not None and stamp_ns <= self._judged_through:
            return
        for answer in self.placer.joint_state(stamp_ns, sent_ns):
            self._add(answer)
        self._pending.setdefault(stamp_ns, (measured, wall))

    def gripper(self, values: Any, sent_ns: int | None = None) -> None:
        self.placer.gripper(values, sent_ns)

    def answer(self, command: Any, stamp_ns: int | None = None,
               sent_ns: int | None = None) -> None:
        """An arm command; `stamp_ns` None for an unstamped one."""
        placed = (self.placer.unstamped(command, sent_ns) if stamp_ns is None
                  else self.placer.stamped(stamp_ns, command, sent_ns))
        if placed is not None:
            self._add(placed)

    def _add(self, answer: Answer) -> None:
        if self._judged_through is not None and answer.step_ns <= self._judged_through:
            self.late_answers += 1
            return
        self._answers[answer.step_ns] = answer

    def due(self, wall: float) -> list[JudgeStep]:
        steps = []
        while self._pending:
            stamp = min(self._pending)
            measured, arrived = self._pending[stamp]
            answer = self._answers.pop(stamp, None)
            if answer is None and not (any(s > stamp for s in self._answers)
                                       or wall - arrived >= self.wait_s
                                       or len(self._pending) > self.max_pending):
                break
            del self._pending[stamp]
            self._judged_through = stamp
            if answer is None:
                self.unanswered += 1
                steps.append(JudgeStep(stamp, measured))
            else:
                answer = self.placer.with_gripper(answer)
                steps.append(JudgeStep(stamp, measured, answer.command, answer.gripper))
        return steps


# ---------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class Divergence:
    """One source against the reference over the steps of an episode."""

    steps: int                        # steps the reference answered
    compared: int                     # ... that the other source answered too
    times_s: np.ndarray               # compared steps, seconds from the episode start
    l2_rad: np.ndarray                # per compared step: L2 norm of the joint error
    max_abs_rad: np.ndarray           # per compared step: the largest absolute joint error
    per_joint_max_abs_rad: np.ndarray  # per joint, over the episode (NaN: nothing compared)
    gripper_compared: int = 0         # compared steps where both commanded the gripper
    gripper_disagreements: int = 0    # ... and one was open, the other closed

    @property
    def gripper_disagreement(self) -> float | None:
        """Fraction of the gripper-compared steps with open / closed differing."""
        if not self.gripper_compared:
            return None
        return self.gripper_disagreements / self.gripper_compared


def compare_answers(steps: Sequence[int], reference: Mapping[int, Answer],
                    other: Mapping[int, Answer], start_ns: int,
                    gripper_threshold: float | None = None) -> Divergence:
    """`other` against `reference` on `steps` (joint_states stamps): per step both answered,
    the joint-space error (arm vectors of one length, one joint order); a gripper is closed
    above `gripper_threshold` (None: grippers are not compared)."""
    answered = [s for s in steps if s in reference]
    both = [s for s in answered if s in other]
    n_joints = len(np.asarray(reference[answered[0]].command)) if answered else 0
    errors = np.zeros((len(both), n_joints))
    for row, step in enumerate(both):
        ref, got = np.asarray(reference[step].command), np.asarray(other[step].command)
        if ref.shape != got.shape:
            raise ConfigError(f'shadow comparison at stamp {step} ns: arm commands of '
                              f'{ref.size} and {got.size} joints')
        errors[row] = got - ref
    abs_errors = np.abs(errors)
    gripper_steps = [s for s in both if gripper_threshold is not None
                     and reference[s].gripper is not None and other[s].gripper is not None]
    differ = sum((reference[s].gripper > gripper_threshold)
                 != (other[s].gripper > gripper_threshold) for s in gripper_steps)
    return Divergence(
        steps=len(answered), compared=len(both),
        times_s=(np.asarray(both, dtype=np.int64) - start_ns) * 1e-9,
        l2_rad=np.linalg.norm(errors, axis=1) if both else np.zeros(0),
        max_abs_rad=abs_errors.max(axis=1) if both and n_joints else np.zeros(0),
        per_joint_max_abs_rad=(abs_errors.max(axis=0) if both
                               else np.full(n_joints, math.nan)),
        gripper_compared=len(gripper_steps), gripper_disagreements=int(differ))


def spread(values: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """p50 / p95 / max of `values` (None each when there are none)."""
    array = np.asarray(values, dtype=float)
    if not array.size:
        return {'p50': None, 'p95': None, 'max': None}
    return {'p50': float(np.percentile(array, 50)), 'p95': float(np.percentile(array, 95)),
            'max': float(array.max())}


def series_indices(times_s: np.ndarray, priority: np.ndarray, max_hz: float) -> np.ndarray:
    """Indices that keep at most `max_hz` samples a second: in each interval of 1 / max_hz the
    sample with the largest `priority` (peaks survive the thinning), in time order."""
    if not times_s.size:
        return np.zeros(0, dtype=int)
    bins = np.floor(times_s * max_hz).astype(np.int64)
    keep: dict[int, int] = {}
    for index, (b, p) in enumerate(zip(bins, priority)):
        if b not in keep or p > priority[keep[b]]:
            keep[b] = index
    return np.array(sorted(keep.values()), dtype=int)


def divergence_summary(div: Divergence, joint_names: Sequence[str]) -> dict[str, Any]:
    """The JSON form of a Divergence's figures (without the series)."""
    return {'l2_rad': spread(div.l2_rad), 'max_abs_rad': spread(div.max_abs_rad),
            'per_joint_max_abs_rad': {name: (None if math.isnan(v) else float(v))
                                      for name, v in zip(joint_names,
                                                         div.per_joint_max_abs_rad)}}


def judge_summary(records: Sequence[audit.AuditRecord]) -> dict[str, Any]:
    """The judge's audit records of an episode: cycles per decision, the would-be
    interventions by decision and reason (runs of cycles, core/audit.summarize) with their rate
    per minute of the trail, and how often it armed itself: `reanchors` after its output had
    drifted from the measured arm (a tracking error: the episode reset, or the judged policy
    path left the arm the expert moves), `re_arms` after any other hold (an operator would have
    had to arm the supervisor)."""
    summary = audit.summarize(records)
    rows: list[dict[str, Any]] = [
        {'decision': decision, 'reason': reason, 'count': count, 'cycles': cycles,
         'per_minute': None if math.isnan(rate) else rate}
        for (decision, reason), (count, cycles, rate) in summary.per_minute().items()]
    rows.sort(key=lambda row: (-row['count'], row['decision'], row['reason']))
    arms = [r for r in summary.operator_actions
            if r.action == 'arm' and r.via == JUDGE_AUTO_ARM_VIA]
    reanchors = sum(TRACKING_FAULT in r.reason for r in arms)
    return {'cycles': summary.cycles, 'decisions': dict(summary.decisions),
            'duration_s': summary.duration_s, 'interventions': rows,
            'reanchors': reanchors, 're_arms': len(arms) - reanchors}


@dataclass
class EpisodeData:
    """What one episode's report is made of (steps: joint_states stamps in [start, end))."""

    info: EpisodeInfo
    steps: list[int]
    driving: dict[int, Answer]
    shadow: dict[int, Answer]
    judged: dict[int, Answer] = field(default_factory=dict)
    audit_records: list[audit.AuditRecord] = field(default_factory=list)


def episode_report(data: EpisodeData, joint_names: Sequence[str],
                   gripper_threshold: float | None = None,
                   max_series_hz: float = DEFAULT_MAX_SERIES_HZ) -> dict[str, Any]:
    """One episode's shadow summary as JSON-ready values (module doc; docs/SHADOW.md)."""
    info = data.info
    start = info.start_stamp_ns if info.start_stamp_ns is not None else (
        data.steps[0] if data.steps else 0)
    div = compare_answers(data.steps, data.driving, data.shadow, start, gripper_threshold)
    judged = (compare_answers(data.steps, data.driving, data.judged, start)
              if data.judged else None)
    keep = series_indices(div.times_s, div.l2_rad, max_series_hz)
    end = info.end_stamp_ns
    return {
        'episode': info.episode, 'seed': info.seed, 'instruction': info.instruction,
        'result': info.result, 'reason': info.reason, 'start_stamp_ns': start,
        'end_stamp_ns': end,
        'duration_s': None if end is None else (end - start) * 1e-9,
        'steps': len(data.steps), 'driving_answered': div.steps,
        'shadow_answered': div.compared,
        'divergence': divergence_summary(div, joint_names),
        'gripper': {'compared': div.gripper_compared,
                    'disagreement': div.gripper_disagreement},
        'judged_divergence': None if judged is None else dict(
            divergence_summary(judged, joint_names), compared=judged.compared),
        'judge': judge_summary(data.audit_records),
        'series': {'t_s': [round(float(t), 4) for t in div.times_s[keep]],
                   'l2_rad': [float(v) for v in div.l2_rad[keep]],
                   'max_abs_rad': [float(v) for v in div.max_abs_rad[keep]]},
    }


# ---------------------------------------------------------------------------- shadow_node
class ShadowComparator:
    """shadow_node's state without ROS: the answers of the driving controller and of the shadow
    source per step, the judge's outputs and audit records, the episodes; `due` hands out the
    report of each finished episode once its data is in (or `report_wait_s` of wall time after
    it ended), and forgets what it no longer needs.

    Arm vectors come in one joint order (the node converts), grippers as finger positions."""

    def __init__(self, joint_names: Sequence[str], gripper_threshold: float | None = None, *,
                 reference: str = 'command', episodes: str = 'task_status',
                 window_s: float = 60.0, report_wait_s: float = 2.0,
                 max_series_hz: float = DEFAULT_MAX_SERIES_HZ) -> None:
        if reference not in REFERENCES:
            raise ConfigError(f'parameter reference={reference!r}: must be one of {REFERENCES}')
        if episodes not in ('task_status', 'window'):
            raise ConfigError(f'parameter episodes={episodes!r}: must be task_status or window '
                              '(auto is resolved by the node)')
        for name, value in (('window_s', window_s), ('report_wait_s', report_wait_s),
                            ('max_series_hz', max_series_hz)):
            if not (math.isfinite(value) and value > 0.0):
                raise ConfigError(f'parameter {name}={value!r}: must be a finite number > 0')
        self.joint_names = tuple(joint_names)
        self.gripper_threshold = gripper_threshold
        self.reference = reference
        self.episodes = episodes
        self.window_ns = int(round(window_s * 1e9))
        self.report_wait_s = report_wait_s
        self.max_series_hz = max_series_hz
        self.placers = {DRIVING: AnswerPlacer(), SHADOW: AnswerPlacer()}
        self.answers: dict[str, dict[int, Answer]] = {DRIVING: {}, SHADOW: {}, JUDGED: {}}
        self.steps: list[int] = []
        self.audit_records: list[audit.AuditRecord] = []
        self.segmenter = EpisodeSegmenter()
        self._ended: list[tuple[EpisodeInfo, float]] = []
        self._previous_step: int | None = None
        self._window: EpisodeInfo | None = None
        self.reported = 0

    # ------------------------------------------------------------------ inputs
    def joint_state(self, stamp_ns: int, arm: np.ndarray, wall: float,
                    sent_ns: int | None = None) -> None:
        """A measurement (arm positions in the comparison's joint order; `sent_ns` its DDS
        source timestamp, None unknown)."""
        if self.steps and stamp_ns <= self.steps[-1]:
            return
        self.steps.append(stamp_ns)
        for source, placer in self.placers.items():
            for answer in placer.joint_state(stamp_ns, sent_ns):
                self.answers[source][answer.step_ns] = answer
        if self.reference == 'measured':
            # Where the driving controller put the arm by this step answers the previous one.
            # The fingers are not compared: closed on a part they stop short of closed.
            if self._previous_step is not None:
                self.answers[DRIVING][self._previous_step] = Answer(
                    self._previous_step, np.asarray(arm, dtype=float))
            self._previous_step = stamp_ns
        if self.episodes == 'window':
            self._advance_window(stamp_ns, wall)

    def gripper(self, source: str, value: float, sent_ns: int | None = None) -> None:
        self.placers[source].gripper(value, sent_ns)

    def arm(self, source: str, values: np.ndarray, stamp_ns: int | None = None,
            sent_ns: int | None = None) -> None:
        """An arm command of DRIVING or SHADOW; `stamp_ns` None when it has no stamp,
        `sent_ns` its DDS source timestamp. The driving controller's commands are ignored with
        reference 'measured'."""
        if source == DRIVING and self.reference == 'measured':
            return
        placer = self.placers[source]
        answer = (placer.unstamped(values, sent_ns) if stamp_ns is None
                  else placer.stamped(stamp_ns, values, sent_ns))
        if answer is not None:
            self.answers[source][answer.step_ns] = answer

    def judged(self, stamp_ns: int, values: np.ndarray) -> None:
        """The judge's output for the step stamped `stamp_ns` (it stamps them exactly)."""
        self.answers[JUDGED][stamp_ns] = Answer(stamp_ns, values)

    def audit(self, records: Sequence[audit.AuditRecord]) -> None:
        self.audit_records.extend(records)

    def task_status(self, values: Mapping[str, str], wall: float) -> None:
        """The sim's task/status key/values (core/recording.EpisodeSegmenter reads them)."""
        if self.episodes != 'task_status':
            return
        event = self.segmenter.on_status(values)
        if isinstance(event, EpisodeEnd) and self.segmenter.current is not None:
            self._ended.append((replace(self.segmenter.current), wall))

    def _advance_window(self, stamp_ns: int, wall: float) -> None:
        if self._window is None:
            self._window = EpisodeInfo(episode=0, seed=None, start_stamp_ns=stamp_ns)
        assert self._window.start_stamp_ns is not None
        if stamp_ns >= self._window.start_stamp_ns + self.window_ns:
            self._ended.append((replace(self._window, end_stamp_ns=stamp_ns), wall))
            self._window = EpisodeInfo(episode=self._window.episode + 1, seed=None,
                                       start_stamp_ns=stamp_ns)

    # ------------------------------------------------------------------ reports
    def _through(self, source: str) -> int | None:
        answers = self.answers[source]
        return max(answers) if answers else None

    def _ready(self, info: EpisodeInfo, ended_wall: float, wall: float) -> bool:
        if wall - ended_wall >= self.report_wait_s:
            return True
        last = max((s for s in self.steps if s < (info.end_stamp_ns or 0)), default=None)
        if last is None:
            return True
        audited = max((r.stamp_ns + STAMP_TOLERANCE_NS for r in self.audit_records
                       if r.kind == 'cycle'), default=None)
        waits = [self._through(SHADOW)]
        if self.answers[JUDGED] or self.audit_records:
            waits += [self._through(JUDGED), audited]  # a judge is in the cell
        return all(t is not None and t >= last for t in waits)

    def due(self, wall: float, final: bool = False) -> list[dict[str, Any]]:
        """The reports of the ended episodes whose data is in, oldest first; `final` (the node
        stops) also reports the episodes still waiting and the open window."""
        reports = []
        if final and self._window is not None and self.steps:
            self._ended.append((replace(self._window, end_stamp_ns=self.steps[-1] + 1), wall))
            self._window = None
        while self._ended:
            info, ended_wall = self._ended[0]
            if not (final or self._ready(info, ended_wall, wall)):
                break
            self._ended.pop(0)
            reports.append(episode_report(self._take(info), self.joint_names,
                                          self.gripper_threshold, self.max_series_hz))
            self.reported += 1
        return reports

    def _resolved(self, source: str, answer: Answer) -> Answer:
        placer = self.placers.get(source)
        return answer if placer is None else placer.with_gripper(answer)

    def _take(self, info: EpisodeInfo) -> EpisodeData:
        """The episode's data; everything before its end is forgotten."""
        start = info.start_stamp_ns if info.start_stamp_ns is not None else 0
        end = info.end_stamp_ns if info.end_stamp_ns is not None else 0

        def inside(stamp: int) -> bool:
            return start <= stamp < end
        within = {source: {s: self._resolved(source, a) for s, a in answers.items()
                           if inside(s)} for source, answers in self.answers.items()}
        data = EpisodeData(info, [s for s in self.steps if inside(s)], within[DRIVING],
                           within[SHADOW], within[JUDGED],
                           [r for r in self.audit_records
                            if inside(r.stamp_ns + STAMP_TOLERANCE_NS)])
        self.steps = [s for s in self.steps if s >= end]
        for source in self.answers:
            self.answers[source] = {s: a for s, a in self.answers[source].items() if s >= end}
        self.audit_records = [r for r in self.audit_records
                              if r.stamp_ns + STAMP_TOLERANCE_NS >= end]
        return data
