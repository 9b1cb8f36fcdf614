"""A small numpy interpreter of ONNX graphs (the ops all-MiniLM-L6-v2's opset-11 graph uses): the
independent reference the torch BERT is checked against. It runs the file's graph node by node,
so it shares nothing with `bert.py` but the initializers. Unknown ops raise.
"""
import numpy as np
from scipy import special

_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _slice(x, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(min(e, np.iinfo(np.int64).max // 2)), int(st))
    return x[tuple(index)]


def run(model, feeds):
    """Outputs (list of arrays, in graph output order) of an onnx ModelProto on numpy feeds."""
    from onnx import numpy_helper
    env = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    env.update(feeds)
    for node in model.graph.node:
        a, x = _attrs(node), [env[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Constant":
            y = numpy_helper.to_array(a["value"])
        elif op in ("Add", "Sub", "Mul", "Div", "Pow"):
            f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power}[op]
            y = f(x[0], x[1])
            if op == "Div" and np.issubdtype(x[0].dtype, np.integer):
                y = np.floor_divide(x[0], x[1])
            y = y.astype(x[0].dtype)
        elif op == "MatMul":
            y = np.matmul(x[0], x[1])
        elif op == "Gather":
            y = np.take(x[0], x[1], axis=a.get("axis", 0))
        elif op == "Unsqueeze":
            y = x[0]
            for ax in sorted(a["axes"]):
                y = np.expand_dims(y, ax)
        elif op == "Shape":
            y = np.array(x[0].shape, dtype=np.int64)
        elif op == "ReduceMean":
            y = x[0].mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1))).astype(x[0].dtype)
        elif op == "Concat":
            y = np.concatenate(x, axis=a["axis"])
        elif op == "Reshape":
            shape = [d if d != 0 else x[0].shape[i] for i, d in enumerate(x[1])]
            y = x[0].reshape(shape)
        elif op == "Transpose":
            y = np.transpose(x[0], a.get("perm"))
        elif op == "Sqrt":
            y = np.sqrt(x[0])
        elif op == "Softmax":
            y = _softmax(x[0], a.get("axis", -1))
        elif op == "Erf":
            y = special.erf(x[0]).astype(x[0].dtype)
        elif op == "Cast":
            y = x[0].astype(_DTYPES[a["to"]])
        elif op == "Slice":
            y = _slice(x[0], *x[1:])
        else:
            raise NotImplementedError(f"ONNX op {op} ({node.name})")
        for name, value in zip(node.output, [y]):
            env[name] = np.asarray(value)
    return [env[o.name] for o in model.graph.output]
