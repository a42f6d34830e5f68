"""Recurrent and video reference architectures, for the op families a CNN zoo never exercises."""
from __future__ import annotations

import torch
import torch.nn as nn


class LSTMClassifier(nn.Module):
    """Token ids -> embedding -> stacked bidirectional LSTM -> linear head on the last step."""

    def __init__(self, vocab: int = 10000, dim: int = 256, hidden: int = 512, layers: int = 2,
                 num_classes: int = 10, cell: str = "lstm"):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = rnn(dim, hidden, num_layers=layers, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(input_ids))
        return self.head(out[:, -1])


class C3D(nn.Module):
    """A small 3D-convolutional video classifier (Tran et al. 2015 layout, halved widths)."""

    def __init__(self, num_classes: int = 400, widths=(32, 64, 128, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, w in enumerate(widths):
            layers += [nn.Conv3d(cin, w, 3, padding=1), nn.BatchNorm3d(w), nn.ReLU(inplace=True),
                       nn.MaxPool3d((1, 2, 2) if i == 0 else 2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))
