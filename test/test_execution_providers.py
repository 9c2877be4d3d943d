"""Execution providers on the shipped model: CUDA, TensorRT and OpenVINO are chosen the same
way (PolicyRuntime's `execution_provider`, policy_node's `execution_provider` parameter).

A provider this onnxruntime offers loads the shipped model and runs one inference on it; one it
lacks is skipped with the reason (what onnxruntime lists, which package would add it), and is
then refused (ConfigError naming it and the available ones) unless fallback is allowed, when
the model runs on CPU and the runtime's warnings - and policy_node's log, at WARN - say so.
test_policy_runtime.py covers the unknown-name and one-missing-provider cases on a toy model.

Real onnxruntime, real model file; the node test is a real policy_node process (DDS).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.policy.runtime import EXECUTION_PROVIDERS, PolicyRuntime
from ros_harness import NodeProcess

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / 'models' / 'pick_place_lrmate.onnx'
# The onnxruntime wheel that carries each provider (the plain `onnxruntime` wheel has CPU only).
PACKAGE_OF = {'cuda': 'onnxruntime-gpu', 'tensorrt': 'onnxruntime-gpu (and TensorRT libraries)',
              'openvino': 'onnxruntime-openvino'}
ACCELERATORS = sorted(PACKAGE_OF)
# Hang guard for a node process starting on a loaded 2-core machine, not a timing check.
WAIT_S = 90.0


def _provider_name(short: str) -> str:
    return EXECUTION_PROVIDERS[short][0]


def _is_available(short: str) -> bool:
    return _provider_name(short) in ort.get_available_providers()


def _why_unavailable(short: str) -> str:
    return (f'{_provider_name(short)} is not offered by this onnxruntime '
            f'{ort.__version__} (it lists: {", ".join(ort.get_available_providers())}); '
            f'{PACKAGE_OF[short]} would add it')


def _one_inference(runtime: PolicyRuntime) -> np.ndarray:
    """The action values of one inference on zero inputs at the zero joint configuration."""
    contract = runtime.contract
    chunk = runtime.infer(runtime.zero_inputs(),
                          joint_positions=dict.fromkeys(contract.robot_joints, 0.0),
                          gripper_position=0.0)
    return chunk.values


@pytest.mark.parametrize('short', ACCELERATORS)
def test_an_available_provider_runs_the_shipped_model(short):
    if not _is_available(short):
        pytest.skip(_why_unavailable(short))
    with PolicyRuntime(SHIPPED_MODEL, short) as runtime:
        assert runtime.provider == _provider_name(short)
        assert runtime.warnings == ()
        values = _one_inference(runtime)
    with PolicyRuntime(SHIPPED_MODEL, 'cpu') as cpu:
        reference = _one_inference(cpu)
    # Same network, other kernels: equal up to float32 rounding (TensorRT may use fp16 only
    # when asked to, which this call does not).
    np.testing.assert_allclose(values, reference, atol=1e-3)


@pytest.mark.parametrize('short', ACCELERATORS)
def test_a_missing_provider_is_refused_naming_it_and_the_available_ones(short):
    if _is_available(short):
        pytest.skip(f'{_provider_name(short)} is available here; nothing to refuse')
    with pytest.raises(ConfigError) as error:
        PolicyRuntime(SHIPPED_MODEL, short)
    message = str(error.value)
    assert f"execution_provider '{short}'" in message and _provider_name(short) in message
    for available in ort.get_available_providers():
        assert available in message


@pytest.mark.parametrize('short', ACCELERATORS)
def test_a_missing_provider_with_fallback_runs_on_cpu_and_says_so(short):
    if _is_available(short):
        pytest.skip(f'{_provider_name(short)} is available here; nothing falls back')
    with PolicyRuntime(SHIPPED_MODEL, short, allow_fallback=True) as runtime:
        assert runtime.provider == 'CPUExecutionProvider'
        (warning,) = runtime.warnings
        assert _provider_name(short) in warning
        assert 'falling back to CPUExecutionProvider' in warning
        values = _one_inference(runtime)
    with PolicyRuntime(SHIPPED_MODEL, 'cpu') as cpu:
        np.testing.assert_array_equal(values, _one_inference(cpu))


def _missing_accelerator() -> str | None:
    return next((short for short in ACCELERATORS if not _is_available(short)), None)


@pytest.mark.ros
def test_policy_node_logs_the_fallback_at_warn_and_refuses_without_it(tmp_path):
    short = _missing_accelerator()
    if short is None:
        pytest.skip('every accelerator provider is available here; nothing falls back')
    parameters = {'model_path': str(SHIPPED_MODEL), 'execution_provider': short}
    with NodeProcess.for_node('policy', 'policy_node',
                              dict(parameters, allow_provider_fallback=True),
                              tmp_path / 'fallback') as node:
        # on_configure logs the runtime's warnings before this line.
        log = node.wait_log(f'loaded {SHIPPED_MODEL.name}', WAIT_S)
    # The runtime also reports it through Python logging (a plain stderr line); the node's own
    # line is the one at WARN.
    node_lines = [line for line in log.splitlines() if line.startswith('[WARN] ')
                  and 'falling back' in line]
    assert len(node_lines) == 1 and _provider_name(short) in node_lines[0], log

    with NodeProcess.for_node('policy', 'policy_node', parameters,
                              tmp_path / 'refused') as node:
        log = node.wait_log('configure failed', WAIT_S)
    node_lines = [line for line in log.splitlines() if line.startswith('[ERROR] ')
                  and 'configure failed' in line]
    assert len(node_lines) == 1 and _provider_name(short) in node_lines[0], log
    assert 'falling back' not in log
