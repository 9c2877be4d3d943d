"""Export a trained policy to ONNX with its contract embedded, and prove numerical parity.

    python -m noetra_ros.learning export --checkpoint run.pt --dataset <dir> \
        --output models/pick_place_lrmate.onnx

Steps: the contract gets the embodiment the policy was trained for (its datasets' robot_type
and that robot's kinematics fingerprint), TorchScript-based ``torch.onnx.export`` (opset 17,
dynamic batch dimension; the torch.export-based exporter would need the extra ``onnxscript``
package), ``onnx.checker``, ``embed_contract`` (which validates the contract against the graph
first), reload through ``load_contract`` + ``validate_against_model``, then onnxruntime vs
torch on a batch of real dataset samples (or seeded random inputs when no dataset is given):
the largest absolute difference must stay below ``PARITY_TOLERANCE``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import json
from pathlib import Path
import time
from typing import Any, Mapping, Sequence
import warnings

import numpy as np

from noetra_ros.core.errors import ConfigError, ContractError

OPSET = 17
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportReport:
    """What export_policy produced and measured."""

    path: Path
    size_bytes: int
    parity_max_abs_diff: float
    parity_samples: int
    parity_source: str
    input_names: tuple[str, ...]

    def describe(self) -> str:
        """One paragraph for the CLI."""
        return (f'exported {self.path} ({self.size_bytes / 1024:.0f} KiB, opset {OPSET}, inputs '
                f'{", ".join(self.input_names)}); onnxruntime vs torch on {self.parity_samples} '
                f'{self.parity_source} samples: max |diff| = {self.parity_max_abs_diff:.2e} '
                f'(tolerance {PARITY_TOLERANCE:.0e})')


def random_inputs(contract: Any, batch: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded model inputs of the contract's shapes (images / state ~ N(0, 1), valid tokens)."""
    from noetra_ros.core.policy.contract import ImageInput, StateInput

    rng = np.random.default_rng(seed)
    out = []
    for spec in contract.inputs:
        if isinstance(spec, (ImageInput, StateInput)):
            out.append(rng.standard_normal((batch,) + spec.shape[1:]).astype(np.float32))
        else:
            tokens = rng.integers(1, spec.token_count, size=(batch, spec.max_length))
            lengths = rng.integers(1, spec.max_length + 1, size=batch)
            tokens[np.arange(spec.max_length)[None, :] >= lengths[:, None]] = 0
            out.append(tokens.astype(np.int64))
    return out


def dataset_inputs(contract: Any, dataset: str | Path, count: int,
                   seed: int = 0) -> list[np.ndarray]:
    """`count` real samples of a dataset (the first, for a ','-joined list), pre-processed with
    the contract (no augmentation)."""
    from noetra_ros.learning.dataset import read_dataset
    from noetra_ros.learning.train import TrainingSamples

    first = str(dataset).split(',')[0]
    data = read_dataset(first, cameras=[s.camera for s in contract.image_inputs])
    samples = TrainingSamples(data, contract, contract.action.chunk_length)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(samples), size=min(count, len(samples)), replace=False))
    inputs, _ = samples.batch(rows)
    return inputs


def export_onnx(model: Any, contract: Any, output: str | Path, *,
                dynamic_batch: bool = True) -> Any:
    """Export `model` (torch, eval mode) to `output` and embed `contract`; returns the proto."""
    import onnx
    import torch

    from noetra_ros.core.policy.contract import embed_contract

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    names = list(contract.input_names)
    example = [torch.from_numpy(x) for x in random_inputs(contract, 1)]
    axes = ({name: {0: 'batch'} for name in names + [contract.action.name]}
            if dynamic_batch else None)
    model.eval()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export (needs onnxscript);
        # it is still supported and gives a plain, small opset-17 graph.
        warnings.simplefilter('ignore', DeprecationWarning)
        # GroupNorm's batch-size sanity check is traced as a constant; it guards nothing here.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(model, tuple(example), str(output), input_names=names,
                          output_names=[contract.action.name], opset_version=OPSET,
                          dynamo=False, dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load(str(output))
    onnx.checker.check_model(proto, full_check=True)
    proto.producer_name = 'noetra_ros.learning.export'
    proto.doc_string = contract.description
    embed_contract(proto, contract, output, validate=True)
    return proto


def parity(model: Any, onnx_path: str | Path, inputs: Sequence[np.ndarray],
           input_names: Sequence[str]) -> float:
    """Largest |onnxruntime - torch| over a batch of inputs (both on CPU, float32)."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    (ort_out,) = session.run(None, dict(zip(input_names, inputs)))
    with torch.no_grad():
        torch_out = model(*[torch.from_numpy(x) for x in inputs]).numpy()
    if ort_out.shape != torch_out.shape:
        raise ContractError(f'parity: onnxruntime output {ort_out.shape} != torch '
                            f'{torch_out.shape}')
    return float(np.max(np.abs(ort_out.astype(np.float64) - torch_out.astype(np.float64))))


def contract_with_info(contract: Any, info: dict[str, Any]) -> Any:
    """A copy of `contract` whose `info` is extended with `info` (scalars only)."""
    from noetra_ros.core.policy.contract import contract_from_dict

    data = contract.to_dict()
    data['info'] = {**dict(contract.info), **info}
    return contract_from_dict(data)


def trained_embodiment(checkpoint: Mapping[str, Any], dataset: str | Path | None = None) -> Any:
    """The contract embodiment of a trained policy: the robot_type of the datasets it was
    trained on (the checkpoint's, and `dataset`, a ','-joined list, when given; those that can
    be read must agree) and that robot's kinematics fingerprint. ConfigError when none can be
    read or they name different robots."""
    from noetra_ros.core.policy.contract import Embodiment
    from noetra_ros.core.robot_model import kinematics_fingerprint
    from noetra_ros.learning.dataset import INFO_PATH

    roots = [str(p) for p in checkpoint.get('dataset', {}).get('path', [])]
    roots += str(dataset).split(',') if dataset is not None else []
    robots = {}
    for root in roots:
        info = Path(root) / INFO_PATH
        if info.is_file():
            robots[root] = json.loads(info.read_text()).get('robot_type')
    if not robots:
        raise ConfigError(f'export: cannot tell which robot the policy was trained for: none of '
                          f'its datasets ({", ".join(roots) or "none named"}) has a readable '
                          f'{INFO_PATH}; pass the training dataset')
    if len(set(robots.values())) != 1:
        raise ConfigError(f'export: the datasets name different robots ({robots}); a contract '
                          'names the one robot a policy was trained for')
    robot = next(iter(robots.values()))
    return Embodiment(robot=robot, kinematics=kinematics_fingerprint(robot))


def export_policy(checkpoint: str | Path, output: str | Path, dataset: str | Path | None = None,
                  parity_samples: int = 64, seed: int = 0) -> ExportReport:
    """Checkpoint -> ONNX with contract, validated and parity-checked; raises on a mismatch."""
    import torch

    from noetra_ros.learning.train import load_checkpoint

    model, contract, ckpt = load_checkpoint(checkpoint)
    history = ckpt.get('history') or [{}]
    val_l1 = float(history[-1].get('val_l1', float('nan')))
    info = {
        'producer': 'noetra_ros.learning',
        'architecture': 'VisuomotorPolicy (per-camera CNN + spatial softmax, state MLP, '
                        'bag-of-words instruction, MLP head)',
        'parameters': int(ckpt.get('parameters', 0)),
        'train_steps': int(ckpt['train_config']['steps']),
        'train_seed': int(ckpt['train_config']['seed']),
        'train_time_s': round(float(ckpt.get('train_time_s', 0.0)), 1),
        # NaN (no validation split) would not survive the JSON round trip: store null.
        'final_val_l1': round(val_l1, 5) if np.isfinite(val_l1) else None,
        'dataset_episodes': int(ckpt['dataset']['episodes']),
        'dataset_frames': int(ckpt['dataset']['frames']),
        'dataset_format': 'LeRobotDataset v3.0',
        'torch_version': str(ckpt.get('torch_version', torch.__version__)),
        'opset': OPSET,
    }
    contract = contract_with_info(contract, info)
    if contract.embodiment is None:
        contract = replace(contract, embodiment=trained_embodiment(ckpt, dataset))
    return write_checked_export(model, contract, output, dataset, parity_samples, seed)


def write_checked_export(model: Any, contract: Any, output: str | Path,
                         dataset: str | Path | None, parity_samples: int,
                         seed: int) -> ExportReport:
    """Export `model` with `contract` embedded, read the contract back, validate it against
    the graph and check onnxruntime against torch on dataset (else random) samples; raises
    ContractError on any mismatch. Shared by every single-graph policy exporter."""
    from noetra_ros.core.policy.contract import load_contract, validate_against_model

    export_onnx(model, contract, output)
    loaded = load_contract(output)
    if loaded != contract:
        raise ContractError(f'{output}: the embedded contract does not read back unchanged')
    validate_against_model(loaded, output)
    if dataset is not None:
        inputs, source = dataset_inputs(contract, dataset, parity_samples, seed), 'dataset'
    else:
        inputs, source = random_inputs(contract, parity_samples, seed), 'random'
    diff = parity(model, output, inputs, contract.input_names)
    if not diff < PARITY_TOLERANCE:
        raise ContractError(f'parity: onnxruntime and torch differ by {diff:.3e} '
                            f'(> {PARITY_TOLERANCE:.0e}) on {source} samples')
    return ExportReport(path=Path(output), size_bytes=Path(output).stat().st_size,
                        parity_max_abs_diff=diff, parity_samples=len(inputs[0]),
                        parity_source=source, input_names=tuple(contract.input_names))


def time_calls(fn, repeats: int, warmup: int = 10) -> np.ndarray:
    """Wall times (ms) of `repeats` calls of fn() after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - start) * 1e3
    return times


def ensemble_onnx(members: Sequence[str | Path], output: str | Path) -> Any:
    """One ONNX model whose action output is the mean of `members`' outputs; returns its
    contract.

    The members must share their contract (inputs, normalisation, outputs, joints; only `info`
    may differ): they then read the same tensors, and averaging their normalised outputs is
    averaging their actions. Independently trained behaviour-cloning policies make partly
    different mistakes, so the mean makes fewer of them; the price is one forward pass per
    member. The graph is the members' graphs side by side (weights and node names prefixed
    `m<i>_`) feeding one Mean node, so any onnxruntime build runs it.
    """
    import onnx
    from onnx import compose, helper

    from noetra_ros.core.policy.contract import embed_contract, load_contract

    if len(members) < 2:
        raise ConfigError(f'ensemble: {len(members)} member(s); give at least two models')
    contracts = [load_contract(path) for path in members]
    reference = {k: v for k, v in contracts[0].to_dict().items() if k != 'info'}
    for path, contract in zip(members[1:], contracts[1:]):
        data = {k: v for k, v in contract.to_dict().items() if k != 'info'}
        different = sorted(k for k in reference if reference[k] != data.get(k))
        if different:
            raise ContractError(f'ensemble: {path} differs from {members[0]} in contract '
                                f'field(s) {different}; members must share inputs, '
                                'normalisation and outputs')
    protos = [onnx.load(str(path)) for path in members]
    inputs = set(contracts[0].input_names)
    action = contracts[0].action.name
    graph = helper.make_graph([], 'ensemble', list(protos[0].graph.input),
                              list(protos[0].graph.output))
    for index, proto in enumerate(protos):
        prefix = f'm{index}_'
        renamed = compose.add_prefix(proto, prefix)
        for node in renamed.graph.node:
            # Every member reads the shared inputs, not prefixed copies of them.
            for k, name in enumerate(node.input):
                if name.startswith(prefix) and name[len(prefix):] in inputs:
                    node.input[k] = name[len(prefix):]
            graph.node.append(node)
        graph.initializer.extend(renamed.graph.initializer)
    graph.node.append(helper.make_node('Mean', [f'm{i}_{action}' for i in range(len(protos))],
                                       [action], name='ensemble_mean'))
    model = helper.make_model(graph, opset_imports=protos[0].opset_import,
                              ir_version=protos[0].ir_version)
    model.producer_name = 'noetra_ros.learning.export (ensemble)'
    onnx.checker.check_model(model, full_check=True)
    parameters = sum(int(c.info.get('parameters', 0)) for c in contracts)
    contract = contract_with_info(contracts[0], {
        'ensemble_members': len(members),
        'ensemble_of': ','.join(Path(p).name for p in members),
        'parameters': parameters})
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model.doc_string = contract.description
    embed_contract(model, contract, output, validate=True)
    return contract
