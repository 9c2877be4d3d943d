"""Evaluation and recording on Ray workers (noetra_ros/distributed.py), in process, no ROS.

One local Ray runtime (2 CPUs) for the module. Real parts throughout: Ray actors in their own
processes, PyBullet worlds, the shipped ONNX policy on onnxruntime, the dataset writer. What is
checked: the distributed evaluation equals the serial `evaluate_policy` seed for seed; a worker
killed in the middle of a run has its episode rerun and counted; bad input (unreachable
address, a model that differs on the workers, a worker that cannot import noetra_ros) is
refused before any episode; a recording on 2 workers is the serial dataset, file for file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import sys

import numpy as np
import pytest

# requirements.txt pins Ray (CI installs it); an optional import as package.xml does not list it.
ray = pytest.importorskip('ray')

from noetra_ros.core.errors import ConfigError  # noqa: E402
from noetra_ros.distributed import (evaluate_policy_distributed,  # noqa: E402
                                    ExpertEpisodeRunner, PolicyEpisodeRunner, record_distributed,
                                    run_distributed)
from noetra_ros.learning.__main__ import shipped_model  # noqa: E402
from noetra_ros.learning.record import (EvalSettings, evaluate_policy, record,  # noqa: E402
                                        RecordConfig)
from ros_harness import ROOT  # noqa: E402

pytestmark = [pytest.mark.episodes]

# Long enough for some of these seeds to succeed (the policy needs 6-10 s of sim, docs/results),
# short enough to keep the module near a minute: results then differ in kind and in length.
EPISODE_LIMIT_S = 8.0
SEEDS = [10000, 10001, 10002, 10003]


@pytest.fixture(scope='module')
def local_ray():
    """A local Ray runtime of 2 CPUs whose workers import this source tree."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={'env_vars': {'PYTHONPATH': os.pathsep.join(
                 filter(None, [str(ROOT), os.environ.get('PYTHONPATH', '')]))}})
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope='module')
def settings():
    return EvalSettings.from_cell(episode_timeout_s=EPISODE_LIMIT_S)


@pytest.fixture(scope='module')
def serial(settings):
    """The serial reference: evaluate_policy in this process."""
    return evaluate_policy(shipped_model(), SEEDS, settings)


def per_seed(result) -> list[tuple]:
    return list(zip(result.seeds, result.successes, result.explanations, result.sim_times,
                    result.interventions, result.instructions))


def test_two_workers_give_the_serial_results_seed_for_seed(local_ray, settings, serial):
    result, run = evaluate_policy_distributed(shipped_model(), SEEDS, settings, workers=2,
                                              show_progress=False)
    assert per_seed(result) == per_seed(serial)
    assert result.label == serial.label
    # Both workers ran episodes, nothing was rerun, and the report names who ran it.
    assert len(run.workers) == 2 and len({w.pid for w in run.workers}) == 2
    assert run.rerun_seeds == [] and run.episodes == len(SEEDS)
    assert all(w.model_sha256 == run.workers[0].model_sha256 != '' for w in run.workers)
    # The test is only meaningful if results differ between seeds.
    assert len({(ok, t) for _, ok, _, t, _, _ in per_seed(serial)}) > 1, per_seed(serial)


def test_a_killed_worker_has_its_episode_rerun_and_counted(local_ray, settings, serial):
    killed = []

    def kill_the_other_worker(outcome, scheduler):
        # Both workers have an episode in flight when the first one comes back: kill the other.
        # Its episode is rerun; or, when it had just finished, the next one handed to it is.
        if not killed:
            slot = next(s for s, info in enumerate(scheduler.infos)
                        if f':{info.pid}' not in outcome.worker)
            killed.append(scheduler.infos[slot].pid)
            ray.kill(scheduler.actors[slot])

    result, run = evaluate_policy_distributed(shipped_model(), SEEDS, settings, workers=2,
                                              show_progress=False,
                                              on_outcome=kill_the_other_worker)
    assert killed and len(run.rerun_seeds) == 1 and run.rerun_seeds[0] in SEEDS
    assert str(killed[0]) in run.dead_workers[0]
    assert killed[0] not in [w.pid for w in run.workers]  # replaced
    assert per_seed(result) == per_seed(serial)
    assert run.as_dict()['reruns'] == 1 and 'rerun' in run.describe()


def test_unreachable_address_is_refused_before_any_episode(local_ray):
    seen = []
    with pytest.raises(ConfigError, match=r'cannot reach a Ray cluster at 127\.0\.0\.1:1 '):
        run_distributed(ExpertEpisodeRunner, ('fanuc_lrmate200id',), [0, 1], workers=2,
                        address='ray://127.0.0.1:1', show_progress=False,
                        on_outcome=lambda o, s: seen.append(o))
    assert seen == []


def test_a_model_that_differs_on_the_workers_is_refused(local_ray, settings, tmp_path,
                                                       monkeypatch):
    # A relative model path names a file from each process's working directory (else the
    # package's data folder): here the driver's is a copy with one byte changed, the workers'
    # the shipped model, as on two machines whose "same" path holds different files.
    relative = Path('models') / shipped_model().name
    driver_copy = tmp_path / relative
    driver_copy.parent.mkdir(parents=True)
    data = bytearray(shipped_model().read_bytes())
    data[-1] ^= 0xFF
    driver_copy.write_bytes(bytes(data))
    monkeypatch.chdir(tmp_path)
    seen = []
    with pytest.raises(ConfigError) as refused:
        run_distributed(PolicyEpisodeRunner, (str(relative), settings, 1), SEEDS, workers=2,
                        address=None, model_path=str(relative), show_progress=False,
                        on_outcome=lambda o, s: seen.append(o))
    message = str(refused.value)
    assert 'no episode was run' in message and seen == []
    # Both workers named, with the file each read and the driver's.
    assert 'worker 0 on' in message and 'worker 1 on' in message
    assert f'model {shipped_model().resolve()} has sha256' in message
    assert str(driver_copy) in message


def test_a_worker_without_the_package_is_refused(local_ray, tmp_path):
    # A worker interpreter in which `import noetra_ros` fails, as on a node where the package
    # is not installed: it wraps Ray's worker entry point and refuses the import.
    blocker = tmp_path / 'no_noetra.py'
    blocker.write_text(
        'import runpy, sys\n'
        'class Refuse:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        "        if name.split('.')[0] == 'noetra_ros':\n"
        "            raise ModuleNotFoundError(\"No module named 'noetra_ros'\")\n"
        'sys.meta_path.insert(0, Refuse())\n'
        'script = sys.argv[1]\n'
        'sys.argv = sys.argv[1:]\n'
        "runpy.run_path(script, run_name='__main__')\n")
    seen = []
    with pytest.raises(ConfigError) as refused:
        run_distributed(ExpertEpisodeRunner, ('fanuc_lrmate200id',), [0, 1], workers=1,
                        address=None, show_progress=False, on_outcome=lambda o, s: seen.append(o),
                        runtime_env={'py_executable': f'{sys.executable} {blocker}'})
    assert seen == []
    assert 'worker 0 could not start: noetra_ros is not importable there (node ' in \
        str(refused.value)


def test_more_workers_than_cpus_is_refused(local_ray):
    with pytest.raises(ConfigError, match=r'--workers 3: the Ray cluster .* has 2 CPUs'):
        run_distributed(ExpertEpisodeRunner, ('fanuc_lrmate200id',), [0, 1, 2], workers=3,
                        address=None, show_progress=False)


def dataset_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file()}


@pytest.mark.slow
def test_recording_on_two_workers_is_the_serial_dataset(local_ray, tmp_path):
    config = RecordConfig(episodes=4, first_seed=0, linger_s=0.2)
    serial = record(config, tmp_path / 'serial')
    killed = []

    def kill_once(outcome, scheduler):
        # A worker dying mid-recording must not change the dataset either. Its episode in
        # flight is rerun; or, when that one had just finished, the next one handed to it is.
        if not killed:
            slot = next(s for s, info in enumerate(scheduler.infos)
                        if f':{info.pid}' not in outcome.worker)
            killed.append(slot)
            ray.kill(scheduler.actors[slot])

    summary, run = record_distributed(config, tmp_path / 'workers', workers=2,
                                      show_progress=False, on_outcome=kill_once)
    assert (summary.kept, summary.failed, summary.frames, summary.failures) == \
        (serial.kept, serial.failed, serial.frames, serial.failures)
    assert summary.kept >= 2 and len(run.rerun_seeds) == 1
    ours, theirs = dataset_files(tmp_path / 'workers'), dataset_files(tmp_path / 'serial')
    assert sorted(ours) == sorted(theirs)
    differing = [name for name in ours if ours[name] != theirs[name]]
    assert differing == [], differing
    info = json.loads((tmp_path / 'workers' / 'meta' / 'info.json').read_text())
    assert info['total_episodes'] == summary.kept
    assert np.isfinite(summary.wall_time_s)
