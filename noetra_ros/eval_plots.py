"""The plots `noetra eval` writes next to its JSON, from the run's report (cli.eval_cell).

- `<stem>_success.png`: success rate with its Wilson 95 % interval per target object (colour and
  shape) and per number of distractors in the scene;
- `<stem>_latency.png`: histogram of the monitor's joint_states -> arm command latencies and,
  when a policy runs, its inference and end-to-end percentiles (policy_node's diagnostics
  publish percentiles only, not samples);
- `<stem>_trace.png` (only when an episode failed): per arm joint, the position commanded to the
  robot and the one measured in joint_states over the first failed episode (the monitor's
  EpisodeTraces; a MotoROS2 cell commands through services, so it has the measured one only).

matplotlib draws through its Agg canvas (no display, no pyplot state).
"""
from __future__ import annotations

from collections.abc import Callable
import math
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
import numpy as np

from noetra_ros.core.errors import NoetraError
from noetra_ros.core.stats import percentiles, wilson_interval

DPI = 100
SUCCESS_SIZE_IN = (11.0, 4.5)
LATENCY_SIZE_IN = (11.0, 4.0)
TRACE_SIZE_IN = (11.0, 7.0)
# Histogram bins of the command latency: enough to show a tail, few enough for 50 episodes.
LATENCY_BINS = 60


def write_evaluation_plots(report: dict, stem: Path) -> list[str]:
    """Write the plots of an evaluated run's report as <stem>_<kind>.png; returns their paths."""
    for key in ('episodes', 'evaluation'):
        if key not in report:
            raise NoetraError(f'evaluation plots: the report has no {key!r} (keys: '
                              f'{sorted(report)}); it must come from `noetra eval`')
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    plots = [(f'{stem}_success.png', SUCCESS_SIZE_IN, _draw_success),
             (f'{stem}_latency.png', LATENCY_SIZE_IN, _draw_latency)]
    if report.get('failed_episode_trace'):
        plots.append((f'{stem}_trace.png', TRACE_SIZE_IN, _draw_trace))
    return [_save(path, size, draw, report) for path, size, draw in plots]


def _save(path: str, size_in: tuple[float, float], draw: Callable[[Figure, dict], None],
          report: dict) -> str:
    figure = Figure(figsize=size_in, dpi=DPI, layout='constrained')
    draw(figure, report)
    figure.savefig(path, dpi=DPI)
    return path


def _title(report: dict) -> str:
    ev = report['evaluation']
    return f'{ev["cell"]} / {ev.get("baseline") or ev["controller"]}'


# ---------------------------------------------------------------- success
def _draw_success(figure: Figure, report: dict) -> None:
    episodes = report['episodes']
    by_object = _success_groups(episodes, lambda e: e.get('target_object') or 'unknown')
    by_scene = _success_groups(episodes, _distractor_label)
    left, right = figure.subplots(1, 2, width_ratios=[max(len(by_object), 1),
                                                      max(len(by_scene), 1) + 1])
    _success_bars(left, by_object, 'target object')
    _success_bars(right, by_scene, 'number of distractors in the scene')
    k = sum(e['success'] for e in episodes)
    figure.suptitle(f'{_title(report)}: success {k}/{len(episodes)} '
                    f'(bars: Wilson 95 % interval)')


def _distractor_label(episode: dict) -> str:
    count = int(episode.get('distractors', -1))
    if count < 0:
        return 'unknown'
    return f'{count} distractor' + ('' if count == 1 else 's')


def _success_groups(episodes: list[dict], key: Callable[[dict], str]) -> dict[str, list[bool]]:
    groups: dict[str, list[bool]] = {}
    for episode in episodes:
        groups.setdefault(key(episode), []).append(bool(episode['success']))
    return dict(sorted(groups.items()))


def _success_bars(axes: Axes, groups: dict[str, list[bool]], what: str) -> None:
    axes.set_title(f'by {what}')
    axes.set_ylim(0.0, 1.05)
    axes.set_ylabel('success rate')
    if not groups:
        axes.text(0.5, 0.5, 'no episode finished', ha='center', transform=axes.transAxes)
        return
    rates, low_err, high_err, labels = [], [], [], []
    for name, results in groups.items():
        k, n = sum(results), len(results)
        low, high = wilson_interval(k, n)
        rates.append(k / n)
        low_err.append(k / n - low)
        high_err.append(high - k / n)
        labels.append(f'{name.replace("_", " ")}\n{k}/{n}')
    x = np.arange(len(labels))
    axes.bar(x, rates, color='tab:blue', alpha=0.8)
    axes.errorbar(x, rates, yerr=[low_err, high_err], fmt='none', ecolor='black', capsize=4)
    axes.set_xticks(x, labels, fontsize=8)


# ---------------------------------------------------------------- latency
def _draw_latency(figure: Figure, report: dict) -> None:
    left, right = figure.subplots(1, 2)
    samples = [v for v in report.get('command_latency_samples_ms', []) if math.isfinite(v)]
    left.set_title('joint_states -> arm command (monitor)')
    left.set_xlabel('latency (ms, wall clock)')
    left.set_ylabel('commands')
    if samples:
        stats = percentiles(samples)
        left.hist(samples, bins=LATENCY_BINS, color='tab:blue', alpha=0.8)
        for point, style in (('p50', '-'), ('p99', '--')):
            left.axvline(stats[point], color='black', linestyle=style,
                         label=f'{point} {stats[point]:.2f} ms')
        left.legend(title=f'n = {stats["n"]}')
    else:
        left.text(0.5, 0.5, 'no command seen', ha='center', transform=left.transAxes)
    _policy_percentiles(right, report['evaluation'])
    figure.suptitle(f'{_title(report)}: latency')


def _policy_percentiles(axes: Axes, evaluation: dict) -> None:
    series = {'inference (onnxruntime run)': evaluation.get('policy_inference_ms', {}),
              'end to end (input stamp -> command)': evaluation.get('policy_end_to_end_ms', {})}
    series = {name: values for name, values in series.items() if values}
    axes.set_title('policy node (its diagnostics publish percentiles only)')
    if not series:
        axes.text(0.5, 0.5, 'no policy in this cell', ha='center', transform=axes.transAxes)
        axes.set_axis_off()
        return
    points = sorted({p for values in series.values() for p in values}, key=lambda p: float(p[1:]))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        x = np.arange(len(points)) + (i - (len(series) - 1) / 2) * width
        axes.bar(x, [values.get(p, math.nan) for p in points], width, label=name)
    axes.set_xticks(np.arange(len(points)), points)
    axes.set_ylabel('ms')
    axes.legend(fontsize=8)


# ---------------------------------------------------------------- command trace
def _draw_trace(figure: Figure, report: dict) -> None:
    trace = report['failed_episode_trace']
    joints = trace['joints']
    measured_t, measured = _series(trace['measured'], len(joints))
    commanded_t, commanded = _series(trace['commanded'], len(joints))
    start = min([t[0] for t in (measured_t, commanded_t) if t.size], default=0.0)
    rows = math.ceil(len(joints) / 2) or 1
    axes = np.atleast_1d(figure.subplots(rows, 2, sharex=True)).ravel()
    for i, joint in enumerate(joints):
        ax = axes[i]
        ax.plot(measured_t - start, measured[:, i], color='tab:blue', label='measured')
        ax.step(commanded_t - start, commanded[:, i], where='post', color='tab:orange',
                linestyle='--', label='commanded')
        ax.set_title(joint, fontsize=9)
        ax.set_ylabel('rad')
    for ax in axes[len(joints):]:
        ax.set_axis_off()
    for ax in axes[max(0, len(joints) - 2):len(joints)]:
        ax.set_xlabel('episode time (s, sim)')
    if joints:
        axes[0].legend(fontsize=8)
    figure.suptitle(f'{_title(report)}: episode {trace["episode"]} (seed {trace["seed"]}) '
                    f'failed - {trace["reason"]}')


def _series(samples: dict, joint_count: int) -> tuple[np.ndarray, np.ndarray]:
    """(times, positions (N, joints)) of a trace series; an empty one has shape (0, joints)."""
    t = np.asarray(samples.get('t_s', []), dtype=float)
    q = np.asarray(samples.get('positions', []), dtype=float).reshape(len(t), joint_count)
    return t, q
