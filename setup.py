"""ament_python package definition for noetra_ros."""
from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'noetra_ros'


def _tree(directory):
    """data_files entries that install `directory` below share/<package>/, keeping sub-folders."""
    entries = []
    for root, _dirs, files in os.walk(directory):
        paths = [os.path.join(root, f) for f in files if not f.endswith('.pyc')]
        if paths:
            entries.append((os.path.join('share', PACKAGE, root), paths))
    return entries


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        *_tree('config'),
        *_tree('urdf'),
        *_tree('models'),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='noetra_ros developers',
    maintainer_email='dev@noetra.example',
    description='ROS 2 runtime for ONNX multimodal robot policies with a PyBullet industrial cell',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},  # colcon picks pytest from here
    entry_points={
        'console_scripts': [
            'sim_node = noetra_ros.sim_node:main',
            'expert_node = noetra_ros.expert_node:main',
            'policy_node = noetra_ros.policy_node:main',
            'safety_node = noetra_ros.safety_node:main',
            'state_publisher_node = noetra_ros.state_publisher_node:main',
            'recorder_node = noetra_ros.recorder_node:main',
            'foxglove_node = noetra_ros.foxglove_node:main',
            'shadow_node = noetra_ros.shadow_node:main',
            'noetra = noetra_ros.cli:main',
        ],
    },
)
