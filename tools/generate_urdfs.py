#!/usr/bin/env python3
"""Generate urdf/<robot>.urdf and urdf/<robot>_gripper.urdf from noetra_ros.core.robots.

Usage: python tools/generate_urdfs.py [--out DIR] [--robot NAME ...]

Geometry is primitive (boxes sized from the published collision-mesh bounds), so the files need
no meshes and load in PyBullet, yourdfpy and robot_state_publisher alike. Each link's inertia is
the solid-box inertia of its collision box about the box centre, carrying the published (or
stated-assumption) mass. Output is byte-for-byte deterministic; test_urdf.py regenerates into a
temporary directory and compares against the committed files.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

_REPO = pathlib.Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # run straight from a checkout without installing
    sys.path.insert(0, str(_REPO))

from noetra_ros.core import robots  # noqa: E402
from noetra_ros.core.robots import GripperSpec, RobotSpec  # noqa: E402

DEFAULT_OUT = _REPO / 'urdf'


def _num(x: float) -> str:
    """Stable short text for a float: no '-0', no float noise like 0.30000000000000004."""
    text = f'{float(x):.10g}'
    return '0' if text in ('-0', '0') else text


def _vec(values) -> str:
    return ' '.join(_num(v) for v in values)


def _box_inertia(mass: float, size) -> tuple[float, float, float]:
    """Principal moments of a solid box (always positive definite, triangle inequality holds)."""
    x, y, z = size
    return (mass * (y * y + z * z) / 12.0, mass * (x * x + z * z) / 12.0,
            mass * (x * x + y * y) / 12.0)


def _material_block(name: str, rgba) -> list[str]:
    return [f'  <material name="{name}">', f'    <color rgba="{_vec(rgba)}"/>', '  </material>']


def _box_link(name: str, mass: float, size, centre, material: str) -> list[str]:
    ixx, iyy, izz = _box_inertia(mass, size)
    origin = f'<origin xyz="{_vec(centre)}" rpy="0 0 0"/>'
    geometry = f'<geometry><box size="{_vec(size)}"/></geometry>'
    return [
        f'  <link name="{name}">',
        '    <inertial>',
        f'      {origin}',
        f'      <mass value="{_num(mass)}"/>',
        f'      <inertia ixx="{_num(ixx)}" ixy="0" ixz="0" iyy="{_num(iyy)}" iyz="0" '
        f'izz="{_num(izz)}"/>',
        '    </inertial>',
        '    <visual>',
        f'      {origin}',
        f'      {geometry}',
        f'      <material name="{material}"/>',
        '    </visual>',
        '    <collision>',
        f'      {origin}',
        f'      {geometry}',
        '    </collision>',
        '  </link>',
    ]


def _frame_link(name: str) -> list[str]:
    # An explicit zero mass: without <inertial> PyBullet substitutes 1 kg, which would hang an
    # extra kilogram on the flange. Zero-mass links behind fixed joints simulate fine.
    return [f'  <link name="{name}">',
            '    <inertial>',
            '      <origin xyz="0 0 0" rpy="0 0 0"/>',
            '      <mass value="0"/>',
            '      <inertia ixx="0" ixy="0" ixz="0" iyy="0" iyz="0" izz="0"/>',
            '    </inertial>',
            '  </link>']


def _joint(name: str, jtype: str, parent: str, child: str, xyz, rpy=(0.0, 0.0, 0.0),
           axis=None, limit=None) -> list[str]:
    lines = [f'  <joint name="{name}" type="{jtype}">',
             f'    <parent link="{parent}"/>',
             f'    <child link="{child}"/>',
             f'    <origin xyz="{_vec(xyz)}" rpy="{_vec(rpy)}"/>']
    if axis is not None:
        lines.append(f'    <axis xyz="{_vec(axis)}"/>')
    if limit is not None:
        lower, upper, velocity, effort = limit
        lines.append(f'    <limit lower="{_num(lower)}" upper="{_num(upper)}" '
                     f'velocity="{_num(velocity)}" effort="{_num(effort)}"/>')
    lines.append('  </joint>')
    return lines


def _arm_lines(spec: RobotSpec) -> list[str]:
    material = f'{spec.vendor.lower()}_colour'
    lines = _material_block(material, spec.rgba)
    for link in spec.links:
        lines += _box_link(link.name, link.mass, link.size, link.centre, material)
    for frame in spec.fixed_frames:
        lines += _frame_link(frame.child)
    for j in spec.joints:
        lines += _joint(j.name, j.type, j.parent, j.child, j.xyz, axis=j.axis,
                        limit=(j.lower, j.upper, j.velocity, j.effort))
    for frame in spec.fixed_frames:
        lines += _joint(frame.name, 'fixed', frame.parent, frame.child, frame.xyz, frame.rpy)
    return lines


def _gripper_lines(g: GripperSpec, mount: str) -> list[str]:
    """Gripper links and joints; the body hangs below ``mount`` along its +z (tool0 z)."""
    material = 'gripper_colour'
    pad_material = 'gripper_pad_colour'
    lines = _material_block(material, g.rgba) + _material_block(pad_material,
                                                                 (0.05, 0.05, 0.05, 1.0))
    bx, by, bz = g.body_size
    lines += _box_link('gripper_base', g.body_mass, g.body_size, (0.0, 0.0, bz / 2), material)
    px, py, pz = g.pad_size
    # Finger link frames sit on the inner pad face at body-bottom height; at joint value 0 the
    # inner faces are stroke_per_finger either side of the centre line (fully open).
    finger_len = g.fingertip_height - bz
    pad_z = g.pad_centre_height - bz
    finger_body_mass = g.finger_mass - robots.PAD_MASS_KG
    # Joint and TCP names come from the gripper facts (robots.GRIPPER_JOINT_NAMES, left first),
    # which the runtime reads back from these files.
    for joint_name, side, sign in zip(g.joint_names, ('left', 'right'), (1.0, -1.0)):
        finger = f'gripper_{side}_finger'
        pad = f'gripper_{side}_pad'
        lines += _box_link(finger, finger_body_mass, (px, g.finger_thickness, finger_len),
                           (0.0, sign * (py + g.finger_thickness / 2), finger_len / 2),
                           material)
        lines += _box_link(pad, robots.PAD_MASS_KG, g.pad_size, (0.0, 0.0, 0.0), pad_material)
        lines += _joint(joint_name, 'prismatic', 'gripper_base', finger,
                        (0.0, sign * g.stroke_per_finger, bz), axis=(0.0, -sign, 0.0),
                        limit=(g.open_position, g.closed_position, g.velocity, g.effort))
        lines += _joint(f'{pad}_joint', 'fixed', finger, pad, (0.0, sign * py / 2, pad_z))
    lines += _frame_link(g.tcp_link)
    lines += _joint('gripper_mount_joint', 'fixed', mount, 'gripper_base', (0.0, 0.0, 0.0))
    lines += _joint(f'{g.tcp_link}_joint', 'fixed', 'gripper_base', g.tcp_link,
                    (0.0, 0.0, g.pad_centre_height))
    return lines


def urdf_text(name: str, with_gripper: bool, gripper: str = robots.DEFAULT_GRIPPER) -> str:
    """Full URDF text of robot ``name``, optionally with the gripper mounted at tool0."""
    spec = robots.robot_spec(name)
    robot_name = f'{name}_gripper' if with_gripper else name
    header = [
        '<?xml version="1.0"?>',
        '<!-- Generated by tools/generate_urdfs.py from noetra_ros/core/robots.py; '
        'do not edit. -->',
        f'<!-- {spec.vendor} {spec.model}: primitive geometry from published collision '
        'bounds. -->',
    ]
    for source in spec.sources:
        header.append(f'<!-- source: {source} -->')
    lines = header + [f'<robot name="{robot_name}">'] + _arm_lines(spec)
    if with_gripper:
        g = robots.gripper_spec(gripper)
        lines.insert(len(header), f'<!-- gripper: {g.model}; finger joint 0 = open, '
                     f'{_num(g.stroke_per_finger)} = closed -->')
        lines += _gripper_lines(g, spec.tool_link)
    lines.append('</robot>')
    return '\n'.join(lines) + '\n'


def generate(out_dir: pathlib.Path = DEFAULT_OUT,
             names: tuple[str, ...] = robots.ROBOT_NAMES) -> list[pathlib.Path]:
    """Write both URDF variants of every robot in ``names`` into ``out_dir``; return the paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        for with_gripper in (False, True):
            path = out_dir / robots.urdf_file_name(name, with_gripper)
            path.write_text(urdf_text(name, with_gripper), encoding='utf-8')
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=pathlib.Path, default=DEFAULT_OUT,
                        help=f'output directory (default: {DEFAULT_OUT})')
    parser.add_argument('--robot', action='append', choices=robots.ROBOT_NAMES,
                        help='robot to generate (repeatable; default: all)')
    args = parser.parse_args(argv)
    for path in generate(args.out, tuple(args.robot or robots.ROBOT_NAMES)):
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
