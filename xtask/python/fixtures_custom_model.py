"""Reference for `crates/models/examples/custom_model.rs`: the same tiny post-LayerNorm encoder in
PyTorch, with the same weights (made from the same formula), on the same batch.

Writes `<out>/custom-model/reference.json`: the inputs and the last hidden state.
"""

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

VOCAB, MAX_POSITIONS, HIDDEN, HEADS, INNER, LAYERS = 40, 24, 16, 4, 32, 2
EPS = 1e-5
IDS = [[1, 5, 9, 14, 22, 31, 2], [1, 7, 33, 12, 2, 0, 0]]
PADDING = [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]]


def tensor_shapes() -> list[tuple[str, list[int]]]:
    """Every tensor, in the example's order (the order seeds the values)."""
    shapes = [
        ("embeddings.tokens.weight", [VOCAB, HIDDEN]),
        ("embeddings.positions.weight", [MAX_POSITIONS, HIDDEN]),
        ("embeddings.layer_norm.weight", [HIDDEN]),
        ("embeddings.layer_norm.bias", [HIDDEN]),
    ]
    for index in range(LAYERS):
        prefix = f"layers.{index}"
        for projection in ["q_proj", "k_proj", "v_proj", "out_proj"]:
            shapes.append((f"{prefix}.self_attn.{projection}.weight", [HIDDEN, HIDDEN]))
            shapes.append((f"{prefix}.self_attn.{projection}.bias", [HIDDEN]))
        for norm in ["self_attn_layer_norm", "final_layer_norm"]:
            shapes.append((f"{prefix}.{norm}.weight", [HIDDEN]))
            shapes.append((f"{prefix}.{norm}.bias", [HIDDEN]))
        shapes.append((f"{prefix}.fc1.weight", [INNER, HIDDEN]))
        shapes.append((f"{prefix}.fc1.bias", [INNER]))
        shapes.append((f"{prefix}.fc2.weight", [HIDDEN, INNER]))
        shapes.append((f"{prefix}.fc2.bias", [HIDDEN]))
    return shapes


def tensor_values(name: str, shape: list[int], seed: int) -> torch.Tensor:
    count = math.prod(shape)
    is_norm_weight = "norm" in name and name.endswith(".weight")
    if len(shape) == 2 and not name.startswith("embeddings"):
        scale = 1.0 / math.sqrt(shape[1])
    elif name.startswith("embeddings") and len(shape) == 2:
        scale = 1.0
    else:
        scale = 0.1
    values = []
    for i in range(count):
        wave = math.sin(0.7548776662 * i + 0.5698402910 * seed)
        values.append(1.0 + 0.1 * wave if is_norm_weight else scale * wave)
    return torch.tensor(values, dtype=torch.float64).to(torch.float32).reshape(shape)


def forward(weights: dict[str, torch.Tensor]) -> torch.Tensor:
    ids = torch.tensor(IDS)
    padding = torch.tensor(PADDING, dtype=torch.bool)
    batch, seq = ids.shape
    positions = torch.arange(seq)
    hidden = weights["embeddings.tokens.weight"][ids] + weights["embeddings.positions.weight"][positions]
    hidden = F.layer_norm(
        hidden, (HIDDEN,), weights["embeddings.layer_norm.weight"], weights["embeddings.layer_norm.bias"], EPS
    )
    head_dim = HIDDEN // HEADS
    # (batch, 1, 1, keys): padded keys are never attended.
    key_mask = torch.zeros(batch, 1, 1, seq).masked_fill(~padding[:, None, None, :], float("-inf"))
    for index in range(LAYERS):
        p = f"layers.{index}"

        def linear(x, name):
            return F.linear(x, weights[f"{p}.{name}.weight"], weights[f"{p}.{name}.bias"])

        def heads(x):
            return x.view(batch, seq, HEADS, head_dim).transpose(1, 2)

        q, k, v = (heads(linear(hidden, f"self_attn.{n}")) for n in ["q_proj", "k_proj", "v_proj"])
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim) + key_mask
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, HIDDEN)
        attended = linear(context, "self_attn.out_proj")
        hidden = F.layer_norm(
            hidden + attended,
            (HIDDEN,),
            weights[f"{p}.self_attn_layer_norm.weight"],
            weights[f"{p}.self_attn_layer_norm.bias"],
            EPS,
        )
        inner = linear(F.gelu(linear(hidden, "fc1")), "fc2")
        hidden = F.layer_norm(
            hidden + inner,
            (HIDDEN,),
            weights[f"{p}.final_layer_norm.weight"],
            weights[f"{p}.final_layer_norm.bias"],
            EPS,
        )
    return hidden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="the fixtures folder to write")
    args = parser.parse_args()
    torch.set_num_threads(1)
    weights = {name: tensor_values(name, shape, seed) for seed, (name, shape) in enumerate(tensor_shapes())}
    with torch.no_grad():
        hidden = forward(weights)
    dest = args.out / "custom-model"
    dest.mkdir(parents=True, exist_ok=True)
    reference = {
        "note": "crates/models/examples/custom_model.rs in PyTorch: the last hidden state of its batch",
        "ids": IDS,
        "padding": PADDING,
        "last_hidden_state": hidden.tolist(),
        "versions": {"torch": torch.__version__},
    }
    (dest / "reference.json").write_text(json.dumps(reference, indent=2, sort_keys=True) + "\n")
    print("custom-model/", flush=True)


if __name__ == "__main__":
    main()
