"""`noetra convert`: recorded MCAP episodes -> LeRobotDataset v3 (learning/convert.py).

The bags are written here with mcap + mcap-ros2-support in the shared recording layout (one
bag directory per episode, profile ros2, ros2msg schemas from the installed .msg files, zstd
chunks, the `noetra_episode` metadata record), at a real cell's rates: joint_states 250 Hz,
two cameras 30 Hz (one raw rgb8, one JPEG CompressedImage), arm and gripper commands 50 Hz.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import re
import subprocess

import numpy as np
import pytest

pytest.importorskip('mcap_ros2')
pytest.importorskip('av')

from noetra_ros.core.robot_model import load_robot_description  # noqa: E402
from noetra_ros.learning.convert import (  # noqa: E402
    BagError, ConvertConfig, convert, read_bag)
from noetra_ros.learning.dataset import (  # noqa: E402
    INFO_PATH, QUANTILE_KEYS, STATS_PATH, read_dataset)
from noetra_ros.cli import main as noetra_main  # noqa: E402

ROBOT = 'fanuc_lrmate200id'
W, H = 64, 48
NS = 1_000_000_000
# Cell clock of the first message: a run does not start at 0.
T0 = 5 * NS


def _share_dirs() -> list[Path]:
    dirs = []
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / 'share')
    import sys
    dirs.append(Path(sys.prefix) / 'share')
    return dirs


def msgdef(type_name: str) -> str:
    """rosbag2's ros2msg schema text: the .msg, then every nested type's, each after a
    separator line and 'MSG: pkg/Name' (the format mcap_ros2's parser reads)."""
    def load(name: str) -> str:
        package, _, short = name.partition('/msg/') if '/msg/' in name else name.partition('/')
        for share in _share_dirs():
            path = share / package / 'msg' / f'{short}.msg'
            if path.is_file():
                return path.read_text()
        raise FileNotFoundError(name)

    primitives = {'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16',
                  'uint16', 'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring'}
    text = load(type_name)
    done, todo, parts = set(), [(type_name, text)], []
    while todo:
        name, body = todo.pop(0)
        package = name.split('/')[0]
        for line in body.splitlines():
            line = line.split('#')[0].strip()
            if not line:
                continue
            field_type = re.sub(r'\[.*\]$', '', line.split()[0])
            field_type = re.sub(r'<=\d+$', '', field_type)
            if field_type in primitives or '=' in line.split()[1:2][0:1]:
                continue
            full = field_type if '/' in field_type else f'{package}/{field_type}'
            if field_type == 'Header':
                full = 'std_msgs/Header'
            if full not in done:
                done.add(full)
                nested = load(full)
                parts.append(f'{"=" * 80}\nMSG: {full}\n{nested}')
                todo.append((full, nested))
    return text + ''.join('\n' + p for p in parts)


def stamp(ns: int) -> dict:
    return {'sec': ns // NS, 'nanosec': ns % NS}


def write_bag(root: Path, name: str, *, seed: int = 7, instruction: str = 'pick the red cube '
              'and place it in the left bin', result: str = 'success', seconds: float = 1.0,
              drop_topics: tuple[str, ...] = (), backwards_at: int | None = None,
              truncate: bool = False, metadata: dict | None = None,
              commands_logged_first: bool = False) -> Path:
    """One episode bag; returns its directory. The arm moves joint 1 as 0.1 * t rad (t from
    the start); the commands lead it by one command period; images encode t in their pixels.
    `commands_logged_first`: each command is sent 0.5 ms after the joint_states of its instant
    (its publish time) but logged before it, as a recorder that took its subscriptions in
    another order would."""
    import cv2
    from mcap.writer import CompressionType
    from mcap_ros2.writer import Writer

    description = load_robot_description(ROBOT)
    arm = list(description.joint_names)
    fingers = list(description.gripper.joint_names)
    bag = root / name
    bag.mkdir(parents=True)
    path = bag / f'{name}_0.mcap'
    with open(path, 'wb') as stream:
        writer = Writer(stream, compression=CompressionType.ZSTD)
        schemas = {t: writer.register_msgdef(t, msgdef(t)) for t in (
            'sensor_msgs/msg/JointState', 'sensor_msgs/msg/Image',
            'sensor_msgs/msg/CompressedImage', 'std_msgs/msg/Float64MultiArray',
            'std_msgs/msg/String')}
        events = []  # (cell time ns, order, topic, type, message)
        end = T0 + int(seconds * NS)
        for k, t in enumerate(range(T0, end + 1, NS // 250)):
            rel = (t - T0) / NS
            positions = [0.1 * rel] + [0.0] * (len(arm) - 1) + [0.01, 0.01]
            # A stamp ten periods in the past, received in its place (a clock jump).
            header = t - 10 * NS // 250 if k == backwards_at else t
            events.append((t, 0, 'joint_states', 'sensor_msgs/msg/JointState', {
                'header': {'stamp': stamp(header), 'frame_id': ''},
                'name': [f'J{i + 1}' for i in range(len(arm))] + fingers,
                'position': positions, 'velocity': [], 'effort': []}))
        for t in range(T0 + 3 * NS // 1000, end, NS // 30):
            level = (t - T0) * 200 // (end - T0)  # brightness encodes the capture time
            pixels = np.full((H, W, 3), level, dtype=np.uint8)
            pixels[:, :, 1] = 40
            events.append((t, 1, 'workspace_camera/image_raw', 'sensor_msgs/msg/Image', {
                'header': {'stamp': stamp(t), 'frame_id': 'workspace_camera_optical_frame'},
                'height': H, 'width': W, 'encoding': 'rgb8', 'is_bigendian': 0,
                'step': W * 3, 'data': pixels.tobytes()}))
            ok, jpeg = cv2.imencode('.jpg', pixels[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            events.append((t, 1, 'wrist_camera/image_raw/compressed',
                           'sensor_msgs/msg/CompressedImage', {
                               'header': {'stamp': stamp(t), 'frame_id': 'wrist'},
                               'format': 'rgb8; jpeg compressed bgr8',
                               'data': jpeg.tobytes()}))
        for t in range(T0, end, NS // 50):
            rel = (t - T0) / NS
            events.append((t, 2, 'safety/position_commands', 'std_msgs/msg/Float64MultiArray',
                           {'layout': {'dim': [], 'data_offset': 0},
                            'data': [0.1 * (rel + 0.02)] + [0.0] * (len(arm) - 1)}))
            events.append((t, 2, 'safety/gripper_commands', 'std_msgs/msg/Float64MultiArray',
                           {'layout': {'dim': [], 'data_offset': 0},
                            'data': [0.04 if rel >= 0.5 else 0.0]}))
        events.append((T0, -1, 'task/instruction', 'std_msgs/msg/String',
                       {'data': instruction}))
        # Received in cell-clock order, 1 ms after the stamp (what a recorder's log time is).
        command = 'std_msgs/msg/Float64MultiArray'
        for sequence, (t, _, topic, type_name, message) in enumerate(sorted(
                events, key=lambda e: (e[0], -3 if commands_logged_first and e[3] == command
                                       else e[1]))):
            if topic in drop_topics:
                continue
            sent = t + NS // 2000 if commands_logged_first and type_name == command else t
            writer.write_message(topic, schemas[type_name], message, log_time=t + NS // 1000,
                                 publish_time=sent, sequence=sequence)
        values = {'cell': 'test_cell', 'robot': ROBOT, 'driver': 'fanuc', 'episode': '0',
                  'seed': str(seed), 'instruction': instruction, 'result': result,
                  'reason': '', 'start_stamp_ns': str(T0), 'end_stamp_ns': str(end),
                  'recorder': 'test_convert', 'recording': 'complete'}
        values.update(metadata or {})
        writer.add_metadata('noetra_episode', values)
        writer.finish()
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[:len(data) * 2 // 3])
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}\n')
    return bag


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('recording')
    good = [write_bag(root, f'test_cell_ep{i:03d}_seed{7 + i}', seed=7 + i,
                      instruction=text, seconds=seconds)
            for i, (text, seconds) in enumerate((
                ('pick the red cube and place it in the left bin', 1.0),
                ('pick the blue block and place it in the right bin', 1.5),
                ('pick the red cube and place it in the left bin', 0.8)))]
    return root, good


@pytest.fixture(scope='module')
def converted(bags, tmp_path_factory):
    _, good = bags
    out = tmp_path_factory.mktemp('out') / 'dataset'
    summary = convert(good, out, ConvertConfig(fps=20))
    return out, summary


def test_converts_bags_into_a_resampled_dataset(converted):
    out, summary = converted
    assert summary.episodes == 3 and not summary.skipped
    data = read_dataset(out)
    # Frames from the first instant every stream has a message (the first camera frame, 3 ms
    # after the start) to the last joint_states: 1.0 s -> 20 frames, 1.5 s -> 30, 0.8 s -> 16.
    assert [row['length'] for row in data.episodes] == [20, 30, 16] == [
        int((s - 0.003) * 20) + 1 for s in (1.0, 1.5, 0.8)]
    assert len(data) == summary.frames == 66
    # Timestamps are k / fps, monotonic within every episode.
    for row in data.episodes:
        lo, hi = row['dataset_from_index'], row['dataset_to_index']
        np.testing.assert_allclose(data.timestamp[lo:hi], np.arange(hi - lo) / 20, atol=1e-6)
        assert np.all(np.diff(data.timestamp[lo:hi]) > 0)
    assert data.tasks == ['pick the red cube and place it in the left bin',
                          'pick the blue block and place it in the right bin']
    np.testing.assert_array_equal(data.task_index, np.repeat([0, 1, 0], [20, 30, 16]))
    assert [row['seed'] for row in data.episodes] == [7, 8, 9]
    names = data.names('observation.state')
    assert names[-1] == 'gripper_position' and len(names) == 7
    assert data.info['robot_type'] == ROBOT


def test_state_action_and_images_come_from_the_right_instant(converted):
    out, _ = converted
    data = read_dataset(out)
    t = 0.003 + data.timestamp[:20].astype(np.float64)  # cell time since the start, episode 0
    # State: the last joint_states (250 Hz) at or before the frame: within one period.
    assert np.all(data.state[:20, 0] <= 0.1 * t + 1e-6)
    assert np.all(data.state[:20, 0] >= 0.1 * (t - 0.004) - 1e-6)
    np.testing.assert_allclose(data.state[:, 6], 0.01, atol=1e-7)  # mean of the fingers
    # Action: the command in force (50 Hz, stamped at the state it answered).
    assert np.all(data.action[:20, 0] <= 0.1 * (t + 0.02) + 1e-6)
    assert np.all(data.action[:20, 0] >= 0.1 * (t - 0.02 + 0.02) - 1e-6)
    gripper = data.action[:20, 6]
    assert gripper[0] == 0.0 and gripper[-1] == pytest.approx(0.04)
    assert np.all(gripper[t < 0.5] == 0.0) and np.all(gripper[t >= 0.52] == pytest.approx(0.04))
    # Images: the camera frame at or before the frame time (its brightness encodes its stamp).
    for cam in ('workspace_camera', 'wrist_camera'):
        level = data.images[cam][:20, :, :, 0].astype(np.float64).mean(axis=(1, 2))
        # Whole nanoseconds, as the bag's stamps: camera j at 3 ms + j * (1 s // 30).
        frame_ns = np.arange(20) * (NS // 20)
        capture_ns = 3_000_000 + frame_ns // (NS // 30) * (NS // 30)
        np.testing.assert_allclose(level, capture_ns * 200 // NS, atol=3.0)  # 1.0 s episode
    assert data.images['wrist_camera'].shape == (66, H, W, 3)


def test_commands_answer_the_state_sent_before_them_whatever_the_log_order(tmp_path):
    # At 250 fps a frame falls between a state and the next command: a command placed at the
    # state logged before it (the previous one, here) would show up 4 ms early.
    def joint_1(metadata: dict) -> tuple[np.ndarray, np.ndarray]:
        bag = write_bag(tmp_path / str(len(metadata)), 'test_cell_ep000_seed7', metadata=metadata,
                        commands_logged_first=True)
        episode = read_bag(bag, ConvertConfig(fps=250)).episode
        return episode.state[:, 0].astype(float), episode.action[:, 0].astype(float)

    state, action = joint_1({'publish_time': 'source_timestamp'})
    t = np.round(state / 0.1, 4)  # the state's time (s): joint 1 = 0.1 * t
    answered = np.floor(np.round(t / 0.02, 6)) * 0.02  # the last command sent at or before it
    np.testing.assert_allclose(action, 0.1 * (answered + 0.02), atol=1e-6)
    state, action = joint_1({})  # no source times: the log order places them, one state early
    early = ~np.isclose(action, 0.1 * (np.floor(np.round(np.round(state / 0.1, 4) / 0.02, 6))
                                       * 0.02 + 0.02), atol=1e-6)
    assert early.any()


def test_stats_carry_lerobot_quantiles_and_codec_is_h264(converted):
    out, _ = converted
    stats = json.loads((out / STATS_PATH).read_text())
    data = read_dataset(out, load_videos=False)
    for key, values in (('observation.state', data.state), ('action', data.action)):
        for q_key, q in zip(QUANTILE_KEYS, (0.01, 0.10, 0.50, 0.90, 0.99)):
            np.testing.assert_allclose(stats[key][q_key],
                                       np.quantile(values.astype(np.float64), q, axis=0),
                                       rtol=1e-6, atol=1e-7)
    image = stats['observation.images.workspace_camera']
    assert set(QUANTILE_KEYS) <= set(image)
    assert np.asarray(image['q50']).shape == (3, 1, 1)
    assert np.asarray(image['q01'])[1, 0, 0] == pytest.approx(40 / 255)  # constant channel
    info = json.loads((out / INFO_PATH).read_text())
    video = info['features']['observation.images.wrist_camera']['info']
    assert video['video.codec'] == 'h264'
    import av
    path = out / info['video_path'].format(video_key='observation.images.wrist_camera',
                                           chunk_index=0, file_index=0)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == 'h264'
    assert info['noetra']['sources'][1]['seed'] == '8'


def test_bad_bags_are_named_and_skipped(bags, tmp_path):
    root, good = bags
    bad_root = tmp_path / 'bad'
    bad = {
        'truncated': write_bag(bad_root, 'truncated', truncate=True),
        'missing': write_bag(bad_root, 'missing', drop_topics=('wrist_camera/image_raw/'
                                                               'compressed',)),
        'backwards': write_bag(bad_root, 'backwards', backwards_at=100),
        'no_instruction': write_bag(bad_root, 'no_instruction', instruction=''),
    }
    expected = {'truncated': 'truncated', 'missing': 'missing topics',
                'backwards': 'non-monotonic stamps', 'no_instruction': 'no instruction'}
    for name, bag in bad.items():
        with pytest.raises(BagError, match=expected[name]) as caught:
            read_bag(bag, ConvertConfig())
        assert str(caught.value).startswith(str(bag))
    failed = write_bag(bad_root, 'failed', result='failed')
    out = tmp_path / 'skip'
    summary = convert([good[0], *bad.values(), failed, good[1]], out,
                      ConvertConfig(on_error='skip'))
    assert summary.episodes == 2
    assert {path.name: problem for path, problem in summary.skipped}.keys() == bad.keys()
    assert [(p.name, r) for p, r in summary.excluded] == [('failed', 'failed')]
    text = summary.describe()
    for name, bag in bad.items():
        assert f'skipped {bag}: ' in text and expected[name] in text
    assert len(read_dataset(out, load_videos=False).episodes) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.skip.partial')]


def test_stop_leaves_no_dataset_and_the_cli_names_the_file(bags, tmp_path, capsys):
    _, good = bags
    bad = write_bag(tmp_path / 'bad', 'backwards', backwards_at=50)
    out = tmp_path / 'stopped'
    with pytest.raises(BagError, match='non-monotonic'):
        convert([good[0], bad, good[1]], out, ConvertConfig(on_error='stop'))
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad']  # no partial folder left
    code = noetra_main(['convert', str(good[0]), str(bad), '--out', str(out), '--on-error',
                        'stop'])
    assert code == 2 and not out.exists()
    assert f'{bad}: non-monotonic stamps' in capsys.readouterr().err
    code = noetra_main(['convert', str(good[0]), str(bad), '--out', str(out), '--fps', '10'])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'converted 1 episode(s) (10 frames)' in printed and f'skipped {bad}' in printed
    assert read_dataset(out, load_videos=False).fps == 10
    # An existing output is refused, never overwritten.
    assert noetra_main(['convert', str(good[0]), '--out', str(out)]) == 2


def lerobot_python() -> str | None:
    """LeRobot's python: NOETRA_LEROBOT_PYTHON, else the repository's .venv-lerobot (both made
    by scripts/lerobot_env.sh, which scripts/test.sh runs before the suite)."""
    named = os.environ.get('NOETRA_LEROBOT_PYTHON')
    if named:
        return named
    default = Path(__file__).resolve().parents[1] / '.venv-lerobot' / 'bin' / 'python'
    return str(default) if default.exists() else None


def test_lerobot_loads_the_dataset_and_deletes_an_episode(converted, tmp_path):
    """LeRobot's own reader and editing tool on a converted dataset: LeRobotDataset decodes a
    frame of each camera with the episode's task, and `delete_episodes` (the function behind
    `lerobot-edit-dataset`'s episode deletion, which re-encodes the videos and so refused the
    former mpeg4 datasets) writes a dataset LeRobot reads back. LeRobot runs in a venv of its
    own (requirements-lerobot.txt says why); scripts/test.sh sets it up, so CI runs this."""
    python = lerobot_python()
    if python is None:
        pytest.skip('no LeRobot venv: run scripts/lerobot_env.sh (scripts/test.sh does)')
    out, _ = converted
    result = subprocess.run(
        [python, str(Path(__file__).with_name('lerobot_check.py')), str(out), str(tmp_path),
         '20', '1'], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen['codebase_version'] == 'v3.0' and seen['video_backend'] == 'torchcodec'
    assert seen['num_episodes'] == 3 and seen['num_frames'] == 66
    # Frame 20 is the first of the second episode (20 + 30 + 16 frames).
    assert seen['task'] == 'pick the blue block and place it in the right bin'
    assert seen['images'] == {'observation.images.workspace_camera': [3, H, W],
                              'observation.images.wrist_camera': [3, H, W]}
    assert seen['quantile_keys'] == ['q01', 'q10', 'q50', 'q90', 'q99']
    # Episode 1 (30 frames) deleted: episodes 0 and 2 remain, renumbered 0 and 1.
    assert seen['deleted_num_episodes'] == 2 and seen['deleted_num_frames'] == 36
    assert seen['deleted_last_task'] == 'pick the red cube and place it in the left bin'
    assert seen['deleted_last_episode_index'] == 1
