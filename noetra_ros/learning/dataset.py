"""Write and read demonstrations in the LeRobotDataset v3.0 on-disk layout.

Layout (field names follow LeRobot's ``CODEBASE_VERSION = 'v3.0'``; many episodes share one file):

    <root>/
      data/chunk-000/file-000.parquet          one row per frame: observation.state, action,
                                               observation.wrench, timestamp, frame_index,
                                               episode_index, index, task_index
      videos/observation.images.<camera>/chunk-000/file-000.mp4
                                               every episode of one camera, back to back
      meta/info.json                           codebase_version, fps, features, totals, templates
      meta/stats.json                          mean / std / min / max / count per feature
      meta/tasks.parquet                       task string (pandas index) -> task_index
      meta/episodes/chunk-000/file-000.parquet one row per episode: length, tasks, from/to index,
                                               data and video file indices, video time range

Video codec: H.264 (libx264 through PyAV, yuv420p, a key frame every 2 frames, crf 23).
LeRobot's dataset tools re-encode only the codecs its encoder accepts - h264, hevc and libsvtav1
(lerobot/datasets/video_utils.py, ``encode_video_frames``) - so an mpeg4 dataset loads but
``lerobot-edit-dataset`` refuses it; the key frame interval of 2 is LeRobot's own default
(``g=2``), which keeps random access to any frame cheap. H.264 is lossy: decoded frames differ
from the rendered ones by a few grey levels (more on sharp edges); LeRobot itself stores lossy
AV1 / H.264, so training on decoded frames is the usual practice. The pip OpenCV wheels decode
it (``read_video``).

Statistics follow LeRobot's compute_stats: min / max / mean / std / count and the quantiles
q01, q10, q50, q90, q99 (``DEFAULT_QUANTILES``; keys ``f'q{int(q * 100):02d}'``) that its
quantile normalisation (pi0.5-class policies) reads; images per channel, scaled to [0, 1].

Only pyarrow, numpy, PyAV and OpenCV are needed (no pandas, no LeRobot install).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import sys
import time
from typing import Any, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from noetra_ros.core.errors import ConfigError, InputError

CODEBASE_VERSION = 'v3.0'
CHUNK_SIZE = 1000
DATA_PATH = 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
VIDEO_PATH = 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
EPISODES_PATH = 'meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
TASKS_PATH = 'meta/tasks.parquet'
INFO_PATH = 'meta/info.json'
STATS_PATH = 'meta/stats.json'
# PyAV encoder name and the codec name LeRobot reads back from the stream ('video.codec').
VIDEO_ENCODER = 'libx264'
VIDEO_CODEC_NAME = 'h264'
VIDEO_PIX_FMT = 'yuv420p'
# LeRobot's encoder defaults (g=2: a key frame every other frame); crf 23 is libx264's default
# quality, close to lossless on the small rendered images.
VIDEO_OPTIONS = {'g': '2', 'crf': '23'}
# LeRobot's DEFAULT_QUANTILES (lerobot/datasets/compute_stats.py) and their stats.json keys.
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f'q{int(round(q * 100)):02d}' for q in QUANTILES)
STATE_KEY = 'observation.state'
WRENCH_KEY = 'observation.wrench'
# LeRobot's name for privileged simulator state (here: where the named object is); training
# targets only, never a policy input.
ENVIRONMENT_KEY = 'observation.environment_state'
ACTION_KEY = 'action'
IMAGE_KEY_PREFIX = 'observation.images.'
WRENCH_NAMES = ('force_x', 'force_y', 'force_z', 'torque_x', 'torque_y', 'torque_z')

T = TypeVar('T')


def progress(items: Iterable[T], total: int | None = None, desc: str = '') -> Iterator[T]:
    """Iterate with a progress bar: tqdm when installed, else a plain line rewritten in place.

    The fallback keeps the learning pipeline free of a dependency that only draws a bar.
    """
    try:
        from tqdm import tqdm  # type: ignore[import-not-found]
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, total=total, desc=desc)
        return
    if total is None and hasattr(items, '__len__'):
        total = len(items)  # type: ignore[arg-type]
    start = time.monotonic()
    last = 0.0
    count = 0
    for count, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= 1.0 or count == total:
            last = now
            of = f'/{total}' if total else ''
            rate = count / max(now - start, 1e-9)
            sys.stderr.write(f'\r{desc} {count}{of} [{now - start:5.0f} s, {rate:6.2f} it/s]')
            sys.stderr.flush()
    if count:
        sys.stderr.write('\n')


@dataclass(frozen=True)
class DatasetSpec:
    """What one dataset holds: rate, robot, vector component names and camera images."""

    fps: int
    robot_type: str
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    cameras: tuple[str, ...]
    image_height: int
    image_width: int
    with_wrench: bool = True
    environment_names: tuple[str, ...] = ()  # empty = no environment_state column

    def __post_init__(self) -> None:
        if not isinstance(self.fps, int) or self.fps <= 0:
            raise ConfigError(f'fps={self.fps!r}: must be a positive integer')
        for name in ('state_names', 'action_names'):
            value = getattr(self, name)
            if len(value) == 0 or len(set(value)) != len(value):
                raise ConfigError(f'{name}={value!r}: must be non-empty and unique')
        if len(set(self.environment_names)) != len(self.environment_names):
            raise ConfigError(f'environment_names={self.environment_names!r}: must be unique')
        if len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f'cameras={self.cameras!r}: names must be unique')
        for cam in self.cameras:
            if not cam or '/' in cam:
                raise ConfigError(f'cameras: {cam!r} is not allowed (empty or contains "/")')
        for name in ('image_height', 'image_width'):
            value = getattr(self, name)
            # yuv420p halves both chroma dimensions: odd sizes cannot be encoded.
            if value < 16 or value % 2:
                raise ConfigError(f'{name}={value!r}: must be an even integer >= 16')

    def image_key(self, camera: str) -> str:
        """LeRobot feature key of a camera, e.g. 'observation.images.scene_camera'."""
        return IMAGE_KEY_PREFIX + camera


@dataclass
class Episode:
    """One demonstration: T frames of observations and the action taken at each frame."""

    task: str
    state: np.ndarray  # (T, D) float32
    action: np.ndarray  # (T, A) float32
    images: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8 RGB
    wrench: np.ndarray | None = None  # (T, 6) float32
    seed: int = -1
    environment_state: np.ndarray | None = None  # (T, len(spec.environment_names)) float32

    @property
    def length(self) -> int:
        """Number of frames."""
        return int(self.state.shape[0])


def _features(spec: DatasetSpec) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for cam in spec.cameras:
        features[spec.image_key(cam)] = {
            'dtype': 'video',
            'shape': [spec.image_height, spec.image_width, 3],
            'names': ['height', 'width', 'channels'],
            'info': {
                'video.height': spec.image_height,
                'video.width': spec.image_width,
                'video.codec': VIDEO_CODEC_NAME,
                'video.pix_fmt': 'yuv420p',
                'video.is_depth_map': False,
                'video.fps': spec.fps,
                'video.channels': 3,
                'has_audio': False,
            },
        }
    features[STATE_KEY] = {'dtype': 'float32', 'shape': [len(spec.state_names)],
                           'names': list(spec.state_names)}
    if spec.with_wrench:
        features[WRENCH_KEY] = {'dtype': 'float32', 'shape': [6], 'names': list(WRENCH_NAMES)}
    if spec.environment_names:
        features[ENVIRONMENT_KEY] = {'dtype': 'float32', 'shape': [len(spec.environment_names)],
                                     'names': list(spec.environment_names)}
    features[ACTION_KEY] = {'dtype': 'float32', 'shape': [len(spec.action_names)],
                            'names': list(spec.action_names)}
    for key, dtype in (('timestamp', 'float32'), ('frame_index', 'int64'),
                       ('episode_index', 'int64'), ('index', 'int64'), ('task_index', 'int64')):
        features[key] = {'dtype': dtype, 'shape': [1], 'names': None}
    return features


def _vector_stats(values: np.ndarray) -> dict[str, list[float] | list[int]]:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    stats: dict[str, list[float] | list[int]] = {
        'min': values.min(axis=0).tolist(),
        'max': values.max(axis=0).tolist(),
        'mean': values.mean(axis=0).tolist(),
        'std': values.std(axis=0).tolist(),
        'count': [int(values.shape[0])],
    }
    # Exact quantiles (LeRobot estimates them from histograms; both are what q01..q99 mean).
    for key, value in zip(QUANTILE_KEYS, np.quantile(values, QUANTILES, axis=0)):
        stats[key] = value.tolist()
    return stats


class VideoEncoder:
    """One camera's video file, encoded frame by frame with PyAV (VIDEO_ENCODER).

    Frames are numbered from 0 at the dataset's fps (time base 1 / fps), so frame k of the file
    is at k / fps seconds, which is how the episodes' from_timestamp address them.
    """

    def __init__(self, path: Path, fps: int, width: int, height: int) -> None:
        import av

        self.path = path
        self._av = av
        self._container = av.open(str(path), mode='w')
        try:
            self._stream = self._container.add_stream(VIDEO_ENCODER, rate=fps,
                                                      options=dict(VIDEO_OPTIONS))
            self._stream.width = width
            self._stream.height = height
            self._stream.pix_fmt = VIDEO_PIX_FMT
        except Exception as exc:
            self._container.close()
            raise ConfigError(f'cannot open a {VIDEO_ENCODER} video encoder at {path}: '
                              f'{exc}') from exc
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame."""
        video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                       format='rgb24')
        video_frame.pts = self.frames
        self._container.mux(self._stream.encode(video_frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()


class _ImageStats:
    """Running per-channel moments and quantiles of images scaled to [0, 1], LeRobot's
    (3, 1, 1) layout. Pixels are whole numbers 0..255, so a 256-bin histogram per channel gives
    the quantiles exactly."""

    def __init__(self) -> None:
        self.count = 0
        self.total = np.zeros(3)
        self.total_sq = np.zeros(3)
        self.low = np.full(3, np.inf)
        self.high = np.full(3, -np.inf)
        self.histogram = np.zeros((3, 256), dtype=np.int64)

    def update(self, frames: np.ndarray) -> None:
        raw = frames.reshape(-1, 3)
        pixels = raw.astype(np.float64) / 255.0
        self.count += pixels.shape[0]
        self.total += pixels.sum(axis=0)
        self.total_sq += (pixels * pixels).sum(axis=0)
        self.low = np.minimum(self.low, pixels.min(axis=0))
        self.high = np.maximum(self.high, pixels.max(axis=0))
        for channel in range(3):
            self.histogram[channel] += np.bincount(raw[:, channel], minlength=256)

    def result(self, frame_count: int) -> dict[str, Any]:
        mean = self.total / max(self.count, 1)
        std = np.sqrt(np.maximum(self.total_sq / max(self.count, 1) - mean * mean, 0.0))

        def chw(values: np.ndarray) -> list:
            return [[[float(v)]] for v in values]

        stats = {'min': chw(self.low), 'max': chw(self.high), 'mean': chw(mean), 'std': chw(std),
                 'count': [int(frame_count)]}
        cumulative = np.cumsum(self.histogram, axis=1)
        for key, q in zip(QUANTILE_KEYS, QUANTILES):
            # The smallest value with at least a fraction q of the pixels at or below it.
            level = np.array([np.searchsorted(cumulative[c], q * cumulative[c, -1])
                              for c in range(3)])
            stats[key] = chw(level / 255.0)
        return stats


class DatasetWriter:
    """Streams episodes into a new LeRobotDataset v3.0 folder; call ``close()`` to finish it.

    Videos are appended episode after episode as they arrive (so memory stays at one episode);
    the tabular data and metadata are written by ``close()``.
    """

    def __init__(self, root: str | Path, spec: DatasetSpec, extra_info: dict | None = None):
        self.root = Path(root)
        if (self.root / INFO_PATH).exists():
            raise ConfigError(f'root={str(self.root)!r}: a dataset already exists there')
        self.spec = spec
        self.extra_info = dict(extra_info or {})
        self._writers: dict[str, VideoEncoder] = {}
        for cam in spec.cameras:
            path = self.root / VIDEO_PATH.format(video_key=spec.image_key(cam), chunk_index=0,
                                                 file_index=0)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writers[cam] = VideoEncoder(path, spec.fps, spec.image_width,
                                              spec.image_height)
        self._image_stats = {cam: _ImageStats() for cam in spec.cameras}
        self._columns: dict[str, list[np.ndarray]] = {
            STATE_KEY: [], ACTION_KEY: [], WRENCH_KEY: [], ENVIRONMENT_KEY: [], 'timestamp': [],
            'frame_index': [],
            'episode_index': [], 'index': [], 'task_index': []}
        self._episodes: list[dict[str, Any]] = []
        self._tasks: dict[str, int] = {}
        self._total_frames = 0
        self._closed = False

    def _check(self, episode: Episode) -> None:
        spec = self.spec
        n = episode.length
        if n == 0:
            raise InputError('episode has no frames')
        if episode.state.shape != (n, len(spec.state_names)):
            raise InputError(f'state shape {episode.state.shape} != ({n}, '
                             f'{len(spec.state_names)})')
        if episode.action.shape != (n, len(spec.action_names)):
            raise InputError(f'action shape {episode.action.shape} != ({n}, '
                             f'{len(spec.action_names)})')
        if spec.with_wrench and (episode.wrench is None or episode.wrench.shape != (n, 6)):
            raise InputError(f'wrench must have shape ({n}, 6)')
        env_shape = (n, len(spec.environment_names))
        if spec.environment_names and (episode.environment_state is None
                                       or episode.environment_state.shape != env_shape):
            raise InputError(f'environment_state must have shape {env_shape}')
        for cam in spec.cameras:
            frames = episode.images.get(cam)
            want = (n, spec.image_height, spec.image_width, 3)
            if frames is None or frames.shape != want or frames.dtype != np.uint8:
                got = None if frames is None else (frames.shape, frames.dtype)
                raise InputError(f'images[{cam!r}] must be uint8 {want}, got {got}')

    def add_episode(self, episode: Episode) -> int:
        """Append one episode; returns its episode_index."""
        if self._closed:
            raise ConfigError('dataset writer is closed')
        self._check(episode)
        spec = self.spec
        ep_index = len(self._episodes)
        n = episode.length
        task_index = self._tasks.setdefault(episode.task, len(self._tasks))
        start = self._total_frames
        frame_index = np.arange(n, dtype=np.int64)
        cols = self._columns
        cols[STATE_KEY].append(episode.state.astype(np.float32))
        cols[ACTION_KEY].append(episode.action.astype(np.float32))
        if spec.with_wrench:
            cols[WRENCH_KEY].append(np.asarray(episode.wrench, dtype=np.float32))
        if spec.environment_names:
            cols[ENVIRONMENT_KEY].append(np.asarray(episode.environment_state, dtype=np.float32))
        # Timestamps are exact multiples of the period, like LeRobot's recorder writes them.
        cols['timestamp'].append((frame_index / spec.fps).astype(np.float32))
        cols['frame_index'].append(frame_index)
        cols['episode_index'].append(np.full(n, ep_index, dtype=np.int64))
        cols['index'].append(np.arange(start, start + n, dtype=np.int64))
        cols['task_index'].append(np.full(n, task_index, dtype=np.int64))
        row: dict[str, Any] = {
            'episode_index': ep_index,
            'tasks': [episode.task],
            'length': n,
            'data/chunk_index': 0,
            'data/file_index': 0,
            'dataset_from_index': start,
            'dataset_to_index': start + n,
        }
        for cam in spec.cameras:
            frames = episode.images[cam]
            writer = self._writers[cam]
            for frame in frames:
                writer.write(frame)
            sampled = frames[:: max(1, n // 10)]
            self._image_stats[cam].update(sampled)
            key = spec.image_key(cam)
            # Per-episode image stats too, as LeRobot's episodes files carry them (its editing
            # tools aggregate the kept episodes' stats).
            episode_stats = _ImageStats()
            episode_stats.update(sampled)
            for stat, value in episode_stats.result(n).items():
                row[f'stats/{key}/{stat}'] = value
            row[f'videos/{key}/chunk_index'] = 0
            row[f'videos/{key}/file_index'] = 0
            row[f'videos/{key}/from_timestamp'] = start / spec.fps
            row[f'videos/{key}/to_timestamp'] = (start + n) / spec.fps
        row['meta/episodes/chunk_index'] = 0
        row['meta/episodes/file_index'] = 0
        for key, values in ((STATE_KEY, episode.state), (ACTION_KEY, episode.action)):
            for stat, value in _vector_stats(values).items():
                row[f'stats/{key}/{stat}'] = value
        row['seed'] = int(episode.seed)
        self._episodes.append(row)
        self._total_frames += n
        return ep_index

    def close(self) -> dict[str, Any]:
        """Finish the videos and write the parquet files and metadata; returns info.json."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._closed:
            raise ConfigError('dataset writer is already closed')
        self._closed = True
        for writer in self._writers.values():
            writer.close()
        if not self._episodes:
            raise InputError('no episode was added; refusing to write an empty dataset')
        spec = self.spec
        cols = {k: np.concatenate(v) for k, v in self._columns.items() if v}

        def fixed_list(values: np.ndarray) -> pa.Array:
            return pa.FixedSizeListArray.from_arrays(
                pa.array(values.reshape(-1), type=pa.float32()), values.shape[1])

        arrays = {STATE_KEY: fixed_list(cols[STATE_KEY]), ACTION_KEY: fixed_list(cols[ACTION_KEY])}
        if spec.with_wrench:
            arrays[WRENCH_KEY] = fixed_list(cols[WRENCH_KEY])
        if spec.environment_names:
            arrays[ENVIRONMENT_KEY] = fixed_list(cols[ENVIRONMENT_KEY])
        arrays['timestamp'] = pa.array(cols['timestamp'], type=pa.float32())
        for key in ('frame_index', 'episode_index', 'index', 'task_index'):
            arrays[key] = pa.array(cols[key], type=pa.int64())
        data_path = self.root / DATA_PATH.format(chunk_index=0, file_index=0)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(arrays), data_path)

        ep_path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        names = list(self._episodes[0].keys())
        pq.write_table(pa.table({k: [row[k] for row in self._episodes] for k in names}), ep_path)

        _write_tasks(self.root / TASKS_PATH, self._tasks)

        stats: dict[str, Any] = {}
        for key in (STATE_KEY, ACTION_KEY, WRENCH_KEY, ENVIRONMENT_KEY):
            if key in cols:
                stats[key] = _vector_stats(cols[key])
        for key in ('timestamp', 'frame_index', 'episode_index', 'index', 'task_index'):
            stats[key] = _vector_stats(cols[key])
        for cam in spec.cameras:
            stats[spec.image_key(cam)] = self._image_stats[cam].result(self._total_frames)
        _write_json(self.root / STATS_PATH, stats)

        info = {
            'codebase_version': CODEBASE_VERSION,
            'robot_type': spec.robot_type,
            'total_episodes': len(self._episodes),
            'total_frames': self._total_frames,
            'total_tasks': len(self._tasks),
            'chunks_size': CHUNK_SIZE,
            'data_files_size_in_mb': 100,
            'video_files_size_in_mb': 500,
            'fps': spec.fps,
            'splits': {'train': f'0:{len(self._episodes)}'},
            'data_path': DATA_PATH,
            'video_path': VIDEO_PATH if spec.cameras else None,
            'features': _features(spec),
        }
        if self.extra_info:
            info['noetra'] = self.extra_info
        _write_json(self.root / INFO_PATH, info)
        return info


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4) + '\n')


def _write_tasks(path: Path, tasks: dict[str, int]) -> None:
    """tasks.parquet as LeRobot writes it with pandas: the task string is the frame's index.

    The pandas metadata is written by hand so that ``pandas.read_parquet`` restores 'task' as the
    index (what LeRobot expects) without this package depending on pandas.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ordered = sorted(tasks.items(), key=lambda item: item[1])
    table = pa.table({'task_index': pa.array([i for _, i in ordered], type=pa.int64()),
                      'task': pa.array([t for t, _ in ordered], type=pa.string())})
    pandas_meta = {
        'index_columns': ['task'],
        'column_indexes': [{'name': None, 'field_name': None, 'pandas_type': 'unicode',
                            'numpy_type': 'object', 'metadata': {'encoding': 'UTF-8'}}],
        'columns': [
            {'name': 'task_index', 'field_name': 'task_index', 'pandas_type': 'int64',
             'numpy_type': 'int64', 'metadata': None},
            {'name': 'task', 'field_name': 'task', 'pandas_type': 'unicode',
             'numpy_type': 'object', 'metadata': None},
        ],
        'creator': {'library': 'pyarrow', 'version': pa.__version__},
        'pandas_version': '2.2.3',
    }
    table = table.replace_schema_metadata({b'pandas': json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


@dataclass
class LoadedDataset:
    """A dataset read back into memory: frame-aligned arrays plus the metadata files."""

    root: Path
    info: dict[str, Any]
    stats: dict[str, Any]
    tasks: list[str]  # task_index -> task string
    episodes: list[dict[str, Any]]
    state: np.ndarray  # (N, D) float32
    action: np.ndarray  # (N, A) float32
    timestamp: np.ndarray  # (N,) float32
    frame_index: np.ndarray  # (N,) int64
    episode_index: np.ndarray  # (N,) int64
    index: np.ndarray  # (N,) int64
    task_index: np.ndarray  # (N,) int64
    wrench: np.ndarray | None = None  # (N, 6) float32
    environment_state: np.ndarray | None = None  # (N, E) float32, names in info['features']
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (N, H, W, 3) uint8

    @property
    def fps(self) -> int:
        """Frames per second of the recording."""
        return int(self.info['fps'])

    @property
    def cameras(self) -> list[str]:
        """Camera names (feature keys without the 'observation.images.' prefix)."""
        return [k[len(IMAGE_KEY_PREFIX):] for k, v in self.info['features'].items()
                if v['dtype'] == 'video']

    def names(self, key: str) -> list[str]:
        """Component names of a vector feature ('observation.state', 'action', ...)."""
        return list(self.info['features'][key]['names'])

    def __len__(self) -> int:
        return int(self.state.shape[0])


def _column_matrix(table: Any, key: str) -> np.ndarray:
    import pyarrow as pa

    column = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
    else:
        width = len(column[0].as_py())
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(-1, width)


def read_video(path: str | Path, start_frame: int = 0, count: int | None = None) -> np.ndarray:
    """Decode frames [start_frame, start_frame + count) of a video as (n, H, W, 3) uint8 RGB."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f'cannot open video {path}')
    try:
        if start_frame:
            # Sequential reads are exact; seeking is keyframe-approximate in some codecs.
            for _ in range(start_frame):
                if not capture.grab():
                    raise InputError(f'{path}: ends before frame {start_frame}')
        frames = []
        while count is None or len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if count is not None and len(frames) != count:
        raise InputError(f'{path}: wanted {count} frames from {start_frame}, got {len(frames)}')
    if not frames:
        raise InputError(f'{path}: no frame decoded')
    return np.stack(frames)


def read_dataset(root: str | Path, load_videos: bool = True,
                 cameras: Sequence[str] | None = None) -> LoadedDataset:
    """Load a LeRobotDataset v3.0 folder written by :class:`DatasetWriter` (or by LeRobot).

    Every camera's video file is decoded once, front to back, and sliced per episode with the
    episodes' ``from_timestamp`` (frame = round(t * fps)).
    """
    import pyarrow.parquet as pq

    root = Path(root)
    info_path = root / INFO_PATH
    if not info_path.exists():
        raise ConfigError(f'root={str(root)!r}: no {INFO_PATH}; not a LeRobotDataset')
    info = json.loads(info_path.read_text())
    if info.get('codebase_version') != CODEBASE_VERSION:
        raise ConfigError(f'codebase_version={info.get("codebase_version")!r}: only '
                          f'{CODEBASE_VERSION!r} is supported')
    stats = json.loads((root / STATS_PATH).read_text())
    tasks_table = pq.read_table(root / TASKS_PATH)
    task_rows = sorted(zip(tasks_table.column('task_index').to_pylist(),
                           tasks_table.column('task').to_pylist()))
    tasks = [t for _, t in task_rows]

    ep_files = sorted((root / 'meta' / 'episodes').glob('chunk-*/file-*.parquet'))
    episodes: list[dict[str, Any]] = []
    for path in ep_files:
        episodes.extend(pq.read_table(path).to_pylist())
    episodes.sort(key=lambda row: row['episode_index'])

    data_files = sorted((root / 'data').glob('chunk-*/file-*.parquet'))
    tables = [pq.read_table(path) for path in data_files]
    import pyarrow as pa

    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    features = info['features']

    def ints(key: str) -> np.ndarray:
        return table.column(key).to_numpy().astype(np.int64)

    loaded = LoadedDataset(
        root=root, info=info, stats=stats, tasks=tasks, episodes=episodes,
        state=_column_matrix(table, STATE_KEY), action=_column_matrix(table, ACTION_KEY),
        timestamp=table.column('timestamp').to_numpy().astype(np.float32),
        frame_index=ints('frame_index'), episode_index=ints('episode_index'),
        index=ints('index'), task_index=ints('task_index'),
        wrench=_column_matrix(table, WRENCH_KEY) if WRENCH_KEY in features else None,
        environment_state=(_column_matrix(table, ENVIRONMENT_KEY)
                           if ENVIRONMENT_KEY in features else None))
    order = np.argsort(loaded.index, kind='stable')
    if not np.array_equal(order, np.arange(len(order))):
        raise ConfigError(f'{root}: data rows are not sorted by index')

    if load_videos:
        fps = int(info['fps'])
        wanted = loaded.cameras if cameras is None else list(cameras)
        for cam in wanted:
            key = IMAGE_KEY_PREFIX + cam
            if key not in features:
                raise ConfigError(f'camera {cam!r} not in dataset (have {loaded.cameras})')
            shape = tuple(features[key]['shape'])
            out = np.empty((len(loaded),) + shape, dtype=np.uint8)
            decoded: dict[tuple[int, int], np.ndarray] = {}
            for row in episodes:
                file_key = (int(row[f'videos/{key}/chunk_index']),
                            int(row[f'videos/{key}/file_index']))
                if file_key not in decoded:
                    path = root / info['video_path'].format(
                        video_key=key, chunk_index=file_key[0], file_index=file_key[1])
                    decoded = {file_key: read_video(path)}  # keep one file in memory at a time
                frames = decoded[file_key]
                first = int(round(row[f'videos/{key}/from_timestamp'] * fps))
                lo, hi = int(row['dataset_from_index']), int(row['dataset_to_index'])
                if first + hi - lo > frames.shape[0]:
                    raise ConfigError(f'{key}: episode {row["episode_index"]} needs frames '
                                      f'{first}..{first + hi - lo} but the video has '
                                      f'{frames.shape[0]}')
                out[lo:hi] = frames[first:first + hi - lo]
            loaded.images[cam] = out
    return loaded


def episode_bounds(data: LoadedDataset) -> np.ndarray:
    """(E, 2) array of [from, to) frame indices per episode, in episode order."""
    return np.array([[row['dataset_from_index'], row['dataset_to_index']]
                     for row in data.episodes], dtype=np.int64)


def describe(data: LoadedDataset) -> str:
    """One-line summary used by the CLI."""
    lengths = [row['length'] for row in data.episodes]
    return (f'{data.root}: {len(data.episodes)} episodes, {len(data)} frames '
            f'(length {min(lengths)}..{max(lengths)}, mean {np.mean(lengths):.1f}), '
            f'{data.fps} fps, cameras {data.cameras}, {len(data.tasks)} tasks, '
            f'{math.fsum(lengths) / data.fps:.0f} s of demonstration')


def _merge_image_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    counts = np.array([p['count'][0] for p in parts], dtype=np.float64)
    weights = counts / counts.sum()
    means = np.array([np.asarray(p['mean'], dtype=np.float64) for p in parts])
    stds = np.array([np.asarray(p['std'], dtype=np.float64) for p in parts])
    mean = np.tensordot(weights, means, axes=1)
    second = np.tensordot(weights, stds ** 2 + means ** 2, axes=1)
    std = np.sqrt(np.maximum(second - mean ** 2, 0.0))
    merged = {'min': np.min([np.asarray(p['min']) for p in parts], axis=0).tolist(),
              'max': np.max([np.asarray(p['max']) for p in parts], axis=0).tolist(),
              'mean': mean.tolist(), 'std': std.tolist(), 'count': [int(counts.sum())]}
    # Quantiles of a union are not a function of the parts' quantiles; the count-weighted mean
    # is the estimate LeRobot's aggregate_stats uses too. Parts written before quantiles
    # existed have none, and then neither has the union.
    if all(key in p for p in parts for key in QUANTILE_KEYS):
        for key in QUANTILE_KEYS:
            values = np.array([np.asarray(p[key], dtype=np.float64) for p in parts])
            merged[key] = np.tensordot(weights, values, axes=1).tolist()
    return merged


def _concat_frames(parts: Sequence[LoadedDataset], camera: str, release: bool) -> np.ndarray:
    total = sum(len(p.images[camera]) for p in parts)
    out = np.empty((total,) + parts[0].images[camera].shape[1:], dtype=np.uint8)
    at = 0
    for part in parts:
        frames = part.images[camera]
        out[at:at + len(frames)] = frames
        at += len(frames)
        if release:
            del part.images[camera]
    return out


def concat_datasets(parts: Sequence[LoadedDataset],
                    release_images: bool = False) -> LoadedDataset:
    """One in-memory dataset from several with the same features and fps (e.g. clean and
    noise-injected recordings): frames and episodes are renumbered, tasks merged by text and
    the statistics recomputed over the union.

    With `release_images` each part's frames are dropped from it as soon as they are copied,
    so peak memory stays near one copy of the frames instead of two (the parts are then left
    without images)."""
    if not parts:
        raise ConfigError('concat_datasets: no dataset given')
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    for other in parts[1:]:
        if other.fps != first.fps or other.info['features'] != first.info['features']:
            raise ConfigError(f'{other.root}: fps / features differ from {first.root}')
    tasks: list[str] = []
    task_index, episodes, frame_offset, episode_offset = [], [], 0, 0
    for part in parts:
        for task in part.tasks:
            if task not in tasks:
                tasks.append(task)
        remap = np.array([tasks.index(t) for t in part.tasks], dtype=np.int64)
        task_index.append(remap[part.task_index])
        for row in part.episodes:
            row = dict(row)
            row['episode_index'] += episode_offset
            row['dataset_from_index'] += frame_offset
            row['dataset_to_index'] += frame_offset
            episodes.append(row)
        frame_offset += len(part)
        episode_offset += len(part.episodes)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    def cat_optional(name: str) -> np.ndarray | None:
        # Same features in every part (checked above), so one part tells for all.
        return cat(name) if getattr(first, name) is not None else None

    merged = LoadedDataset(
        root=first.root, info=dict(first.info), stats={}, tasks=tasks, episodes=episodes,
        state=cat('state'), action=cat('action'), timestamp=cat('timestamp'),
        frame_index=cat('frame_index'),
        episode_index=np.concatenate([p.episode_index + sum(len(q.episodes) for q in parts[:i])
                                      for i, p in enumerate(parts)]),
        index=np.arange(frame_offset, dtype=np.int64), task_index=np.concatenate(task_index),
        wrench=cat_optional('wrench'), environment_state=cat_optional('environment_state'),
        images={cam: _concat_frames(parts, cam, release_images)
                for cam in list(first.images) if all(cam in p.images for p in parts)})
    merged.info['total_episodes'] = len(episodes)
    merged.info['total_frames'] = frame_offset
    merged.info['sources'] = [str(p.root) for p in parts]
    merged.stats = {STATE_KEY: _vector_stats(merged.state),
                    ACTION_KEY: _vector_stats(merged.action)}
    for key in first.stats:
        if key.startswith(IMAGE_KEY_PREFIX):
            merged.stats[key] = _merge_image_stats([p.stats[key] for p in parts])
    return merged
