"""Real-time chunking inside denoising: with blend rtc and a model whose denoise stage inpaints a
known prefix (contract v2 pipeline), PolicyLoop hands the runtime the rows the robot executes
while the inference runs, so the new chunk starts exactly on them (core/policy/loop.py
`_known_prefix`, core/policy/pipeline.py)."""
import numpy as np

from noetra_ros.core.policy.loop import LoopConfig, Observation, PolicyLoop
from noetra_ros.core.policy.preprocess import ImageFrame
from noetra_ros.core.policy.runtime import PolicyRuntime
from test_contract_v2_pipeline import JOINTS, pipeline_dict, Q0, write_model

DELAY = 3


def _observation(stamp, q):
    frame = ImageFrame(np.full((24, 32, 3), 90, np.uint8), 32, 24, 'rgb8', 96)
    return Observation(stamp=stamp, joint_positions=dict(zip(JOINTS, q)),
                       images={'scene_camera': frame}, instruction='pick the red cube',
                       gripper_position=0.0)


def _loop(tmp_path, blend, inpaint=True):
    runtime = PolicyRuntime(write_model(tmp_path, pipeline_dict(inpaint_prefix=inpaint)))
    config = LoopConfig(blend=blend, replan_steps=DELAY, inference_delay_steps=DELAY,
                        trajectory_points=1)
    return PolicyLoop(runtime, JOINTS, config)


def test_the_next_chunk_starts_on_the_rows_executed_during_its_inference(tmp_path):
    loop = _loop(tmp_path, 'rtc')
    queued, executed = [], {}
    add = loop.queue.add

    def record_add(values, stamp, step_period_s, now=None):  # what the loop queues
        queued.append((stamp, np.array(values)))
        return add(values, stamp, step_period_s, now=now)
    loop.queue.add = record_add
    # The measured state drifts away from the chunk's own rows, so a chunk computed without
    # the prefix would start elsewhere.
    for k in range(3 * DELAY + 1):
        t = round(0.05 * (k + 1), 6)
        result = loop.step(t, lambda t=t: _observation(t, Q0 + 0.2 * t))
        if result.command is not None:
            executed[t] = np.append(result.command.positions[0], result.command.gripper_position)
    assert len(queued) >= 2
    stamp, second = queued[1]
    rows = [executed[round(stamp + 0.05 * k, 6)] for k in range(DELAY)]
    # The rows commanded while the second chunk was being inferred are its first rows.
    np.testing.assert_allclose(second[:DELAY], rows, atol=1e-5)
    assert np.abs(second[DELAY] - second[DELAY - 1]).max() > 0.0


def test_no_prefix_without_rtc_or_without_an_inpainting_stage(tmp_path):
    assert _loop(tmp_path / 'a', 'ensemble')._known_prefix(0.1) is None
    plain = _loop(tmp_path / 'b', 'rtc', inpaint=False)
    assert not plain._inpaints and plain._known_prefix(0.1) is None
