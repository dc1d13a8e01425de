#!/usr/bin/env python3
"""Loads a FedDrift model exported with `aggregator export-model --format safetensors --examples N` into
PyTorch's own modules (nn.Embedding, nn.LSTM, nn.Linear; load_state_dict(strict=True), so every tensor
name and shape must be what PyTorch expects) and checks that they reproduce FedDrift's next-category
probabilities on the example sequences written beside it.

    python3 scripts/check-safetensors.py model.safetensors        # reads model.safetensors.examples.json

Needs torch and numpy (not installed by scripts/test; CI does not run this). On Debian:
apt-get install python3-torch, then /usr/bin/python3 scripts/check-safetensors.py FILE. Exit 0 when every example
matches within 1e-5 (max absolute difference of probabilities).
"""
import json
import struct
import sys

import numpy as np
import torch
from torch import nn


def load(path):
    """Parses the safetensors layout by hand (8-byte LE header size, JSON header, float32 buffer)."""
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    metadata = header.pop("__metadata__", {})
    base = 8 + size
    tensors = {}
    for name, entry in header.items():
        assert entry["dtype"] == "F32", f"{name}: dtype {entry['dtype']}"
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data[base + begin:base + end], dtype="<f4").reshape(entry["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors, metadata


class NextInterest(nn.Module):
    def __init__(self, meta):
        super().__init__()
        categories, embedding, hidden = int(meta["categories"]), int(meta["embedding"]), int(meta["hidden"])
        actions, gaps = int(meta["action_embedding"]), int(meta["gap_embedding"])
        self.embedding = nn.Embedding(categories, embedding)
        self.action_embedding = nn.Embedding(4, actions) if actions else None
        self.gap_embedding = nn.Embedding(int(meta["gap_buckets"]), gaps) if gaps else None
        self.lstm = nn.LSTM(embedding + actions + gaps, hidden, batch_first=True)
        self.linear = nn.Linear(hidden, categories)

    def forward(self, categories, actions, gaps):
        parts = [self.embedding(categories)]
        if self.action_embedding is not None:
            parts.append(self.action_embedding(actions))
        if self.gap_embedding is not None:
            parts.append(self.gap_embedding(gaps))
        out, _ = self.lstm(torch.cat(parts, dim=-1))
        return self.linear(out)


def main():
    path = sys.argv[1]
    examples_path = sys.argv[2] if len(sys.argv) > 2 else path + ".examples.json"
    tensors, meta = load(path)
    model = NextInterest(meta)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    with open(examples_path) as f:
        examples = json.load(f)
    worst = 0.0
    with torch.no_grad():
        for case in examples["cases"]:
            logits = model(torch.tensor([case["categories"]]), torch.tensor([case["actions"]]),
                           torch.tensor([case["gaps"]]))
            probabilities = torch.softmax(logits[0, -1].double(), dim=-1).numpy()
            worst = max(worst, float(np.max(np.abs(probabilities - np.array(case["probabilities"])))))
    print(f"torch {torch.__version__}: {len(examples['cases'])} sequences, model v{meta.get('model_version')}, "
          f"{sum(t.numel() for t in tensors.values())} parameters; "
          f"max |p_torch - p_feddrift| = {worst:.2e}")
    sys.exit(0 if worst < 1e-5 else 1)


if __name__ == "__main__":
    main()
