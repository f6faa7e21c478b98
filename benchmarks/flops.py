"""Floating-point work of one training step, counted from the model the kit actually builds.

Forward: every Conv2D costs 2 x H_out x W_out x k_h x k_w x C_in x C_out FLOP per image (one
multiply and one add per weight per output position), every Dense 2 x inputs x outputs. Batch
norm, activations and pooling are a few FLOP per element, under 1 % of the convolutions, and left
out. For InceptionV3 at 299x299 this count is 11.4 GFLOP, i.e. 5.7 G multiply-adds: the "5.7" quoted
for InceptionV3 is multiply-adds, so the forward pass is ~11.4 GFLOP in the FLOP = 1 multiply or
1 add convention used here (and for the machine's peak).

Backward, per layer with cost F (same size as its forward):
* weight gradients (F) only for layers whose weights are trainable;
* input gradients (F) only where something trainable lies upstream, i.e. the error signal still
  has to travel further down. A frozen base therefore costs nothing backward, a base unfrozen from
  ``mixed9`` costs 2F only for the layers above ``mixed9``, a fully trainable network ~3F in total.
This is the usual "backward is 2x forward" rule applied layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The figure from the issue (multiply-adds), scaled by (size / 299)^2; kept as a cross-check.
INCEPTION_V3_GMAC_299 = 5.7


@dataclass
class StepFlops:
    forward: float  # FLOP per image
    backward: float
    trainable_forward_share: float  # share of forward FLOP in layers with trainable weights

    @property
    def train_step(self) -> float:
        return self.forward + self.backward

    def as_dict(self) -> dict:
        return {
            "forward_gflop_per_image": round(self.forward / 1e9, 3),
            "backward_gflop_per_image": round(self.backward / 1e9, 3),
            "train_gflop_per_image": round(self.train_step / 1e9, 3),
            "trainable_forward_share": round(self.trainable_forward_share, 3),
        }


def _layer_forward_flops(layer) -> float:
    kind = type(layer).__name__
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        return 0.0
    weights = 1
    for dim in kernel.shape:
        weights *= int(dim)
    if kind in ("Conv2D", "Conv1D", "Conv3D", "SeparableConv2D", "DepthwiseConv2D"):
        spatial = 1
        for dim in layer.output.shape[1:-1]:
            spatial *= int(dim)
        return 2.0 * spatial * weights
    if kind in ("Dense", "EinsumDense"):
        return 2.0 * weights
    return 0.0


def _graph_of(op):
    """The functional graph behind a model used as a layer (a Sequential keeps one inside), else None."""
    import keras

    if not isinstance(op, keras.Model):
        return None
    if hasattr(op, "operations"):
        return op
    return getattr(op, "_functional", None)


def _graph(model) -> tuple[list, dict[int, set[int]]]:
    """Leaf operations of ``model`` (nested models opened up) and each one's direct parents (ids)."""
    leaves: list = []
    parents: dict[int, set[int]] = {}

    def outputs_of(op) -> set[int]:
        # What a consumer of ``op`` really depends on: the op itself, or a nested model's outputs.
        inner = _graph_of(op)
        if inner is not None:
            return {id(t._keras_history.operation) for t in inner.outputs}
        return {id(op)}

    def visit(container, entry_parents: set[int]) -> None:
        for op in container.operations:
            direct: set[int] = set()
            for node in getattr(op, "_inbound_nodes", []):
                for parent_node in node.parent_nodes:
                    parent = parent_node.operation
                    if any(parent is o for o in container.operations):
                        direct |= outputs_of(parent)
            if type(op).__name__ == "InputLayer":
                direct |= entry_parents
            inner = _graph_of(op)
            if inner is not None:
                visit(inner, direct)
            else:
                leaves.append(op)
                parents[id(op)] = parents.get(id(op), set()) | direct

    visit(_graph_of(model) or model, set())
    return leaves, parents


def training_flops(model) -> StepFlops:
    """FLOP per image of one training step of ``model`` as it is currently frozen/unfrozen."""
    leaves, parents = _graph(model)
    by_id = {id(op): op for op in leaves}
    forward = {id(op): _layer_forward_flops(op) for op in leaves}
    has_trainable = {id(op): bool(getattr(op, "trainable_weights", [])) for op in leaves}

    # trainable_upstream[x]: x or something feeding it (transitively) has trainable weights.
    trainable_upstream: dict[int, bool] = {}

    def upstream(op_id: int) -> bool:
        if op_id not in trainable_upstream:
            trainable_upstream[op_id] = False  # guards against cycles (there are none in a DAG)
            trainable_upstream[op_id] = has_trainable.get(op_id, False) or any(
                upstream(p) for p in parents.get(op_id, ()) if p in by_id)
        return trainable_upstream[op_id]

    total_forward = sum(forward.values())
    backward = 0.0
    trainable_forward = 0.0
    for op_id, cost in forward.items():
        if has_trainable[op_id]:
            backward += cost  # weight gradients
            trainable_forward += cost
        if any(upstream(p) for p in parents.get(op_id, ()) if p in by_id):
            backward += cost  # input gradients, passed further down to trainable layers
    share = trainable_forward / total_forward if total_forward else 0.0
    return StepFlops(forward=total_forward, backward=backward, trainable_forward_share=share)


def reference_forward_gflop(image_size: int) -> float:
    """The issue's rule of thumb in FLOP (2 x 5.7 G multiply-adds at 299, scaled by area)."""
    return 2 * INCEPTION_V3_GMAC_299 * (image_size / 299) ** 2
