"""Run by test/test_convert.py with LeRobot's own python (scripts/lerobot_env.sh): load a
converted dataset with LeRobotDataset, read a frame, delete an episode with LeRobot's editing
tool and read the result back; print what was seen as one JSON object for the test to check.

    <lerobot python> test/lerobot_check.py DATASET_ROOT WORK_DIR FRAME DELETE_EPISODE
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


def main(root: str, work: str, frame: int, delete: int) -> dict:
    os.environ['HF_HUB_OFFLINE'] = '1'  # never the hub: the dataset is local
    import lerobot
    from lerobot.datasets.dataset_tools import delete_episodes
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    copy = Path(work) / 'copy'
    shutil.copytree(root, copy)  # LeRobot may write into the dataset folder it reads
    dataset = LeRobotDataset('noetra/converted', root=copy)
    item = dataset[frame]
    images = {key: list(item[key].shape) for key in dataset.meta.video_keys}
    smaller = delete_episodes(dataset, [delete], output_dir=Path(work) / 'deleted',
                              repo_id='noetra/deleted')
    last = smaller[smaller.num_frames - 1]
    return {
        'lerobot': lerobot.__version__ if hasattr(lerobot, '__version__') else '',
        'codebase_version': dataset.meta.info['codebase_version'],
        'video_backend': dataset.video_backend,
        'num_episodes': dataset.num_episodes, 'num_frames': dataset.num_frames,
        'task': item['task'], 'images': images,
        'state_shape': list(item['observation.state'].shape),
        'quantile_keys': sorted(k for k in dataset.meta.stats['observation.state']
                                if k.startswith('q')),
        'deleted_num_episodes': smaller.num_episodes, 'deleted_num_frames': smaller.num_frames,
        'deleted_last_task': last['task'],
        'deleted_last_episode_index': int(last['episode_index']),
    }


if __name__ == '__main__':
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
