"""Toy ONNX policies with a known output, shared by the policy tests."""
import numpy as np
from onnx import numpy_helper


def set_ramp_head(model, chunk_length: int, step: float, width: int):
    """Zero the toy model's head weights and set its bias so that action row k is k * step in
    every one of its `width` columns (the head's tanh is undone by arctanh). Returns the model."""
    for init in model.graph.initializer:
        if init.name == 'head_w':
            array = np.zeros_like(numpy_helper.to_array(init))
        elif init.name == 'head_b':
            rows = np.arange(chunk_length, dtype=np.float32)[:, None] * step
            array = np.arctanh(np.repeat(rows, width, axis=1)).reshape(-1).astype(np.float32)
        else:
            continue
        init.CopyFrom(numpy_helper.from_array(array, init.name))
    return model
