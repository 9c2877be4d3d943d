"""Shared body of every launch file: a `cell` argument and the cell's nodes.

Imports launch / launch_ros lazily: they exist only where ROS 2 is installed from apt, while the
rest of the package (and `noetra run`) works with the PyPI wheels alone.
"""
from __future__ import annotations

from noetra_ros.bringup import (available_cells, HARDWARE, load_cell, with_foxglove,
                                with_recorder)


def cell_launch_description(default_cell: str):
    """LaunchDescription with `cell:=<name or path>` (default `default_cell`),
    `hardware:=sim|real` (bringup.load_cell), `record:=true|false` (+ `run_dir`) and
    `foxglove:=true|false` (+ `foxglove_address`: the live view, docs/VIEWING.md)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def nodes(context, *args, **kwargs):
        cell = load_cell(LaunchConfiguration('cell').perform(context),
                         hardware=LaunchConfiguration('hardware').perform(context))
        if LaunchConfiguration('record').perform(context).lower() in ('true', '1'):
            cell = with_recorder(cell, LaunchConfiguration('run_dir').perform(context))
        if LaunchConfiguration('foxglove').perform(context).lower() in ('true', '1'):
            cell = with_foxglove(cell, LaunchConfiguration('foxglove_address').perform(context))
        return [Node(**spec.launch_kwargs(), output='screen', emulate_tty=True)
                for spec in cell.nodes]

    return LaunchDescription([
        DeclareLaunchArgument(
            'cell', default_value=default_cell,
            description=f'cell name from config/cells ({", ".join(available_cells())}) '
                        'or a path to a cell YAML file'),
        DeclareLaunchArgument(
            'hardware', default_value='sim', choices=list(HARDWARE),
            description='sim: the simulator plays the arm\'s driver; real: everything but the '
                        'simulator, on the wall clock, talking to the real driver'),
        DeclareLaunchArgument(
            'record', default_value='false', choices=['true', 'false'],
            description='add a recorder node: every topic into <run_dir>/recording/, one '
                        'rosbag2 MCAP bag per episode (docs/RECORDING.md)'),
        DeclareLaunchArgument(
            'run_dir', default_value='runs/launch',
            description='run folder of record:=true (bags in <run_dir>/recording/)'),
        DeclareLaunchArgument(
            'foxglove', default_value='false', choices=['true', 'false'],
            description='add the Foxglove live view: a WebSocket server relaying every topic '
                        '(docs/VIEWING.md)'),
        DeclareLaunchArgument(
            'foxglove_address', default_value='',
            description='[HOST:]PORT of foxglove:=true (default 127.0.0.1:8765: this machine '
                        'only; 0.0.0.0:PORT shows the cameras to the whole network)'),
        OpaqueFunction(function=nodes),
    ])
