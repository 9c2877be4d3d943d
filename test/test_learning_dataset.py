"""LeRobotDataset v3.0 writer / reader: write-then-read round trips and the recorder."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip('pyarrow')

from noetra_ros.core.errors import ConfigError, InputError  # noqa: E402
from noetra_ros.learning.dataset import (  # noqa: E402
    CODEBASE_VERSION, concat_datasets, DATA_PATH, DatasetSpec, DatasetWriter, Episode,
    EPISODES_PATH, INFO_PATH, read_dataset, read_video, STATS_PATH, TASKS_PATH, VIDEO_PATH)

JOINTS = ('joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6', 'gripper_position')
CAMERAS = ('scene_camera', 'wrist_camera')
ENVIRONMENT = ('target_x', 'target_y', 'target_z')
H, W = 48, 64


def smooth_frames(rng: np.random.Generator, n: int) -> np.ndarray:
    """Frames a video codec can carry nearly unchanged: gradients plus a moving coloured box."""
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx * 3, yy * 4, np.full_like(xx, 90)], axis=-1).astype(np.float64)
    frames = np.empty((n, H, W, 3), dtype=np.uint8)
    colour = rng.integers(60, 255, size=3)
    for t in range(n):
        frame = base.copy()
        x0 = 5 + (2 * t) % (W - 20)
        frame[10:26, x0:x0 + 14] = colour
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def make_episode(rng: np.random.Generator, n: int, task: str, seed: int) -> Episode:
    return Episode(task=task,
                   state=rng.normal(size=(n, len(JOINTS))).astype(np.float32),
                   action=rng.normal(size=(n, len(JOINTS))).astype(np.float32),
                   images={cam: smooth_frames(rng, n) for cam in CAMERAS},
                   wrench=rng.normal(size=(n, 6)).astype(np.float32), seed=seed,
                   environment_state=rng.normal(size=(n, len(ENVIRONMENT))).astype(np.float32))


def spec() -> DatasetSpec:
    return DatasetSpec(fps=20, robot_type='fanuc_lrmate200id', state_names=JOINTS,
                       action_names=JOINTS, cameras=CAMERAS, image_height=H, image_width=W,
                       environment_names=ENVIRONMENT)


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp('ds') / 'demo'
    tasks = ['pick the red cube and place it in the left bin',
             'pick the blue block and place it in the right bin',
             'pick the red cube and place it in the left bin']
    episodes = [make_episode(rng, n, task, seed) for seed, (n, task)
                in enumerate(zip((12, 7, 20), tasks))]
    writer = DatasetWriter(root, spec(), extra_info={'source': 'test'})
    for index, episode in enumerate(episodes):
        assert writer.add_episode(episode) == index
    info = writer.close()
    return root, episodes, info


def test_layout_matches_lerobot_v3_templates(written):
    root, _, info = written
    assert info['codebase_version'] == CODEBASE_VERSION == 'v3.0'
    assert info['data_path'] == DATA_PATH
    assert info['video_path'] == VIDEO_PATH
    assert (root / DATA_PATH.format(chunk_index=0, file_index=0)).is_file()
    assert (root / EPISODES_PATH.format(chunk_index=0, file_index=0)).is_file()
    for cam in CAMERAS:
        video = root / VIDEO_PATH.format(video_key=f'observation.images.{cam}', chunk_index=0,
                                         file_index=0)
        assert video.is_file() and video.stat().st_size > 0
    for path in (INFO_PATH, STATS_PATH, TASKS_PATH):
        assert (root / path).is_file()
    on_disk = json.loads((root / INFO_PATH).read_text())
    assert on_disk['total_episodes'] == 3 and on_disk['total_frames'] == 39
    assert on_disk['total_tasks'] == 2 and on_disk['fps'] == 20
    features = on_disk['features']
    assert features['observation.state'] == {'dtype': 'float32', 'shape': [7],
                                             'names': list(JOINTS)}
    assert features['action']['names'] == list(JOINTS)
    assert features['observation.images.wrist_camera']['dtype'] == 'video'
    assert features['observation.images.wrist_camera']['shape'] == [H, W, 3]
    for key in ('timestamp', 'frame_index', 'episode_index', 'index', 'task_index'):
        assert features[key]['shape'] == [1]
    assert on_disk['noetra']['source'] == 'test'


def test_tabular_data_round_trips_exactly(written):
    root, episodes, _ = written
    data = read_dataset(root)
    assert len(data) == 39 and len(data.episodes) == 3
    np.testing.assert_array_equal(data.state, np.concatenate([e.state for e in episodes]))
    np.testing.assert_array_equal(data.action, np.concatenate([e.action for e in episodes]))
    np.testing.assert_array_equal(data.wrench, np.concatenate([e.wrench for e in episodes]))
    np.testing.assert_array_equal(data.environment_state,
                                  np.concatenate([e.environment_state for e in episodes]))
    assert data.names('observation.environment_state') == list(ENVIRONMENT)
    np.testing.assert_array_equal(data.index, np.arange(39))
    np.testing.assert_array_equal(data.episode_index, np.repeat([0, 1, 2], [12, 7, 20]))
    np.testing.assert_array_equal(data.frame_index[12:19], np.arange(7))
    np.testing.assert_allclose(data.timestamp[12:19], np.arange(7) / 20, atol=1e-7)
    # Tasks are deduplicated: episodes 0 and 2 share task 0.
    assert data.tasks == [episodes[0].task, episodes[1].task]
    np.testing.assert_array_equal(data.task_index, np.repeat([0, 1, 0], [12, 7, 20]))
    rows = data.episodes
    assert [r['length'] for r in rows] == [12, 7, 20]
    assert [(r['dataset_from_index'], r['dataset_to_index']) for r in rows] == [
        (0, 12), (12, 19), (19, 39)]
    assert rows[1]['tasks'] == [episodes[1].task]
    assert [r['seed'] for r in rows] == [0, 1, 2]
    key = 'videos/observation.images.scene_camera'
    assert rows[2][f'{key}/from_timestamp'] == pytest.approx(19 / 20)
    assert rows[2][f'{key}/to_timestamp'] == pytest.approx(39 / 20)
    np.testing.assert_allclose(rows[1]['stats/action/mean'], episodes[1].action.mean(axis=0),
                               rtol=1e-6, atol=1e-6)


def test_frames_round_trip_within_codec_tolerance(written):
    root, episodes, _ = written
    data = read_dataset(root)
    for cam in CAMERAS:
        original = np.concatenate([e.images[cam] for e in episodes]).astype(np.int16)
        decoded = data.images[cam].astype(np.int16)
        assert decoded.shape == original.shape
        error = np.abs(decoded - original)
        # H.264 is lossy: a few grey levels on average, more right at the box edges.
        assert error.mean() < 4.0, (cam, error.mean())
        assert np.percentile(error, 99) < 40, cam
        # Frames stay in order across episode boundaries (episodes share one file): each
        # decoded frame is closest to its own original, not to a neighbour.
        for i in (11, 12, 18, 19):
            own = np.abs(decoded[i] - original[i]).mean()
            assert own < np.abs(decoded[i] - original[i + 1]).mean()


def test_stats_match_the_data(written):
    root, episodes, _ = written
    stats = json.loads((root / STATS_PATH).read_text())
    state = np.concatenate([e.state for e in episodes]).astype(np.float64)
    np.testing.assert_allclose(stats['observation.state']['mean'], state.mean(axis=0),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(stats['observation.state']['std'], state.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats['observation.state']['min'], state.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats['observation.state']['max'], state.max(axis=0), rtol=1e-6)
    assert stats['observation.state']['count'] == [39]
    image = stats['observation.images.scene_camera']
    assert np.asarray(image['mean']).shape == (3, 1, 1)
    assert all(0.0 <= v[0][0] <= 1.0 for v in image['mean'])


def test_tasks_parquet_carries_pandas_index_metadata(written):
    import pyarrow.parquet as pq

    root, episodes, _ = written
    table = pq.read_table(root / TASKS_PATH)
    meta = json.loads(table.schema.metadata[b'pandas'])
    # LeRobot reads tasks.parquet with pandas and looks tasks up by the index (the string).
    assert meta['index_columns'] == ['task']
    assert table.column('task').to_pylist() == [episodes[0].task, episodes[1].task]
    assert table.column('task_index').to_pylist() == [0, 1]


def test_read_video_slices_exact_frames(written):
    root, _, _ = written
    path = root / VIDEO_PATH.format(video_key='observation.images.wrist_camera', chunk_index=0,
                                    file_index=0)
    everything = read_video(path)
    assert everything.shape == (39, H, W, 3)
    np.testing.assert_array_equal(read_video(path, 12, 7), everything[12:19])
    with pytest.raises(InputError):
        read_video(path, 30, 20)


def test_concat_renumbers_and_recomputes_stats(written):
    root, episodes, _ = written
    one = read_dataset(root)
    both = concat_datasets([one, read_dataset(root)])
    assert len(both) == 78 and len(both.episodes) == 6
    assert both.tasks == one.tasks
    np.testing.assert_array_equal(both.index, np.arange(78))
    np.testing.assert_array_equal(both.episode_index[39:], one.episode_index + 3)
    assert [r['dataset_from_index'] for r in both.episodes] == [0, 12, 19, 39, 51, 58]
    np.testing.assert_array_equal(both.images['scene_camera'][39:], one.images['scene_camera'])
    np.testing.assert_array_equal(both.environment_state[39:], one.environment_state)
    # Same data twice: the statistics of the union equal those of one copy.
    np.testing.assert_allclose(both.stats['observation.state']['std'],
                               one.stats['observation.state']['std'], rtol=1e-6)
    np.testing.assert_allclose(both.stats['observation.images.wrist_camera']['mean'],
                               one.stats['observation.images.wrist_camera']['mean'], rtol=1e-9)
    assert both.stats['observation.images.wrist_camera']['count'] == [78]


def test_writer_rejects_bad_episodes_and_reader_bad_versions(tmp_path):
    rng = np.random.default_rng(0)
    writer = DatasetWriter(tmp_path / 'bad', spec())
    good = make_episode(rng, 4, 'pick the red cube and place it in the left bin', 0)
    with pytest.raises(InputError, match='state shape'):
        writer.add_episode(Episode(good.task, good.state[:, :3], good.action, good.images,
                                   good.wrench))
    with pytest.raises(InputError, match='images'):
        writer.add_episode(Episode(good.task, good.state, good.action,
                                   {'scene_camera': good.images['scene_camera']}, good.wrench,
                                   environment_state=good.environment_state))
    with pytest.raises(InputError, match='environment_state'):
        writer.add_episode(Episode(good.task, good.state, good.action, good.images, good.wrench,
                                   environment_state=good.environment_state[:2]))
    writer.add_episode(good)
    writer.close()
    with pytest.raises(ConfigError, match='already exists'):
        DatasetWriter(tmp_path / 'bad', spec())
    info_path = tmp_path / 'bad' / INFO_PATH
    info = json.loads(info_path.read_text())
    info['codebase_version'] = 'v2.1'
    info_path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match='codebase_version'):
        read_dataset(tmp_path / 'bad')
    with pytest.raises(ConfigError, match='image_height'):
        DatasetSpec(fps=20, robot_type='x', state_names=JOINTS, action_names=JOINTS,
                    cameras=CAMERAS, image_height=47, image_width=W)


@pytest.mark.episodes
def test_recorder_stores_the_expert_episode(tmp_path):
    pytest.importorskip('pybullet')
    from noetra_ros.learning.record import RecordConfig, record

    summary = record(RecordConfig(episodes=1, first_seed=0), tmp_path / 'expert')
    assert summary.kept + summary.failed == 1
    assert summary.kept == 1, summary.describe()
    data = read_dataset(tmp_path / 'expert')
    assert data.cameras == ['workspace_camera', 'wrist_camera']
    assert data.names('observation.state')[-1] == 'gripper_position'
    n = len(data)
    assert n == summary.frames > 40
    # The expert opens the gripper at the start, closes it on the object, opens it to release.
    gripper_cmd = data.action[:, -1]
    assert gripper_cmd[0] == pytest.approx(0.0) and gripper_cmd.max() > 0.04
    assert gripper_cmd[-1] == pytest.approx(0.0)
    # The measured state follows the commanded targets (lag of a few steps at most).
    assert np.max(np.abs(data.state[-1, :6] - data.action[-1, :6])) < 0.05
    assert data.images['workspace_camera'].shape[1:] == (96, 128, 3)
    assert data.tasks[0].startswith('pick the ')
    # Where the named object is (training target of the grounding head): base-frame position
    # on the table at the start, lifted later, and its pixel inside both images at frame 0.
    names = data.names('observation.environment_state')
    assert names[:7] == ['target_x', 'target_y', 'target_z', 'target_u_workspace_camera',
                         'target_v_workspace_camera', 'target_u_wrist_camera',
                         'target_v_wrist_camera']
    env = data.environment_state
    assert env.shape == (n, 7 + 4 * 6 + 1) and np.all(np.isfinite(env))
    assert 0.0 < env[0, 2] < 0.05 and env[:, 2].max() > 0.1
    # The zoomed workspace camera shows the whole object region at the start.
    assert 0 <= env[0, 3] <= 127 and 0 <= env[0, 4] <= 95
    assert 0 <= env[0, 5] <= 127 and 0 <= env[0, 6] <= 95
    # One slot per object, the named one first: its colour / shape indices name the
    # instruction's words, its pixel is the target's; empty slots are -1 and off-image.
    from noetra_ros.core.sim.task import COLOURS, SHAPES
    column = {name: env[:, i] for i, name in enumerate(names)}
    words = data.tasks[0].split()
    assert COLOURS[int(column['object0_colour'][0])] == words[2]
    assert SHAPES[int(column['object0_shape'][0])] == words[3]
    np.testing.assert_array_equal(column['object0_u_workspace_camera'],
                                  column['target_u_workspace_camera'])
    present = [slot for slot in range(4) if column[f'object{slot}_colour'][0] >= 0]
    assert 2 <= len(present) <= 4 and present == list(range(len(present)))
    pairs = {(column[f'object{s}_colour'][0], column[f'object{s}_shape'][0]) for s in present}
    assert len(pairs) == len(present)  # every object is a distinct colour / shape pair
    for slot in present[1:]:
        # Distractors stand still in the fixed camera unless touched.
        u = column[f'object{slot}_u_workspace_camera']
        assert 0 <= u[0] <= 127 and abs(u[-1] - u[0]) < 2.0
    for slot in range(len(present), 4):
        assert column[f'object{slot}_shape'][0] == -1
        assert column[f'object{slot}_u_wrist_camera'][0] == -1000.0
    # Last, the named object's yaw: at frame 0 the yaw the seed laid it down with (the layout
    # comes from the same generator calls as SimWorld.reset), a heading the policy must see.
    from noetra_ros.core.sim import scene
    from noetra_ros.core.sim.task import sample_layout, sample_task
    rng = np.random.default_rng(0)
    task = sample_task(rng)
    layout = sample_layout(rng, len(task.objects), scene.OBJECT_REGION_X, scene.OBJECT_REGION_Y,
                           scene.OBJECT_MIN_SPACING_M)
    assert names[-1] == 'target_yaw'
    assert column['target_yaw'][0] == pytest.approx(layout[0, 2], abs=1e-3)


def test_yaw_of_reads_the_heading_about_z():
    from noetra_ros.core.expert import yaw_of

    for yaw in (-3.0, -1.2, 0.0, 0.4, 2.9):
        quaternion = (0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2))
        assert yaw_of(quaternion) == pytest.approx(yaw, abs=1e-9)
    # A half turn about x (upside down) leaves the local x axis, so the heading, in place.
    assert yaw_of((1.0, 0.0, 0.0, 0.0)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.episodes
def test_noise_injected_only_in_the_named_phases(tmp_path):
    """Offsets during the free-space approach push the arm off the expert's path (the stored
    action is the clean command that leads back); outside the named phases they decay, so the
    arm grasps, carries and releases on the expert's path."""
    pytest.importorskip('pybullet')
    from noetra_ros.learning.record import RecordConfig, record

    with pytest.raises(ConfigError, match='noise_phases'):
        RecordConfig(action_noise_rad=0.04, noise_phases=('wander',))
    summary = record(RecordConfig(episodes=1, first_seed=3, action_noise_rad=0.04,
                                  noise_phases=('approach',)), tmp_path / 'noisy')
    assert summary.kept == 1, summary.describe()
    data = read_dataset(tmp_path / 'noisy')
    gap = np.abs(data.state[:, :6] - data.action[:, :6]).max(axis=1)
    closes = int(np.flatnonzero(data.action[:, 6] > 0.02)[0])
    assert gap[:closes].max() > 0.03  # off the path while approaching
    assert gap[-3:].max() < 0.005  # back on it (settled) at the end
