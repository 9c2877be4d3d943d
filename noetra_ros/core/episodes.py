"""Episode bookkeeping shared by the sim node and the evaluators: seeds, timeouts, results.

DEFAULT_EPISODE_TIMEOUT_S is the one default of the episode limit: the simulated world's task
check, the sim node's schedule and the in-process evaluation all start from it, and a cell file
overrides it for all of them at once (its sim node's `episode_timeout_s`, which `noetra eval`
and `python -m noetra_ros.learning evalcheck --cell` both read).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math

from noetra_ros.core.errors import ConfigError

# Sim seconds before an unfinished episode counts as failed: three times the scripted expert's
# longest episode on seeds 0-99 (8.35 s, docs/results/run_expert_seeds0-99_report.json), so a
# policy that hesitates still gets time, while a stalled one does not hold up an evaluation.
DEFAULT_EPISODE_TIMEOUT_S = 25.0
# Sim seconds the cell holds between two episodes (the nodes keep running on the finished
# scene), so that results and logs of one episode are out before the next reset.
DEFAULT_RESET_PAUSE_S = 1.0
# sim_node's diagnostics message while it waits for the first task/reset (`noetra run` resends
# the reset when it sees it well after sending one).
WAITING_FOR_RESET = 'waiting for the first task/reset'


@dataclass(frozen=True)
class EpisodeResult:
    index: int
    seed: int
    instruction: str
    success: bool
    reason: str
    duration_s: float


@dataclass
class EpisodeSchedule:
    """Runs `episodes` episodes (0 = forever) with seeds first_seed, first_seed+1, ...

    Time is passed in (sim seconds) so the schedule is identical in lockstep and real time.
    """

    episodes: int = 0
    first_seed: int = 0
    episode_timeout_s: float = DEFAULT_EPISODE_TIMEOUT_S
    reset_pause_s: float = DEFAULT_RESET_PAUSE_S
    index: int = -1
    seed: int = -1
    instruction: str = ''
    started_at: float = math.nan
    ended_at: float = math.nan
    results: list[EpisodeResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ConfigError(f'episodes must be >= 0 (0 = run forever), got {self.episodes}')
        if self.first_seed < 0:
            raise ConfigError(f'first_seed must be >= 0, got {self.first_seed}')
        if not self.episode_timeout_s > 0:
            raise ConfigError(f'episode_timeout_s must be > 0, got {self.episode_timeout_s}')
        if not self.reset_pause_s >= 0:
            raise ConfigError(f'reset_pause_s must be >= 0, got {self.reset_pause_s}')

    @property
    def running(self) -> bool:
        return self.index >= 0 and math.isnan(self.ended_at)

    @property
    def finished(self) -> bool:
        """All scheduled episodes have ended (never true when episodes == 0)."""
        return self.episodes > 0 and len(self.results) >= self.episodes

    def next_seed(self) -> int | None:
        if self.finished:
            return None
        return self.first_seed + len(self.results)

    def start(self, seed: int, instruction: str, now: float) -> None:
        self.index += 1
        self.seed, self.instruction = seed, instruction
        self.started_at, self.ended_at = now, math.nan

    def elapsed(self, now: float) -> float:
        return now - self.started_at if self.index >= 0 else 0.0

    def update(self, now: float, success: bool, failure: str = '') -> EpisodeResult | None:
        """Feed the task state once per step; returns the result when the episode ends."""
        if not self.running:
            return None
        reason = ''
        if success:
            reason = 'success'
        elif failure:
            reason = failure
        elif self.elapsed(now) >= self.episode_timeout_s:
            reason = f'timeout after {self.episode_timeout_s:.1f} s'
        if not reason:
            return None
        self.ended_at = now
        result = EpisodeResult(self.index, self.seed, self.instruction, success, reason,
                               self.elapsed(now))
        self.results.append(result)
        return result

    def reset_due(self, now: float) -> bool:
        """True when the next episode should start (after the pause, unless finished)."""
        if self.finished:
            return False
        if self.index < 0:
            return True
        return not self.running and now - self.ended_at >= self.reset_pause_s
