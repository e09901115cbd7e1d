"""The two nn.Modules: exact layer sizes and output shapes and ranges."""

from __future__ import annotations

import torch

from server.models.autoencoder import AutoencoderConfig, LSTMAutoencoder
from server.models.lstm import FailureRiskConfig, FailureRiskLSTM


def test_failure_lstm_has_the_specified_layers() -> None:
    model = FailureRiskLSTM(FailureRiskConfig(n_inputs=12))
    assert (model.lstm1.input_size, model.lstm1.hidden_size) == (12, 64)
    assert (model.lstm2.input_size, model.lstm2.hidden_size) == (64, 32)
    assert (model.dense.in_features, model.dense.out_features) == (32, 16)
    assert (model.head.in_features, model.head.out_features) == (16, 1)
    assert model.drop1.p == model.drop2.p == 0.2


def test_failure_lstm_maps_a_batch_of_windows_to_probabilities() -> None:
    torch.manual_seed(0)
    model = FailureRiskLSTM(FailureRiskConfig(n_inputs=12)).eval()
    with torch.inference_mode():
        risk = model(torch.randn(5, 24, 12) * 3)
    assert risk.shape == (5,)
    assert bool(((risk > 0) & (risk < 1)).all())
    assert torch.allclose(torch.sigmoid(model.logits(torch.zeros(2, 24, 12))), model(torch.zeros(2, 24, 12)))


def test_autoencoder_reconstructs_the_window_shape_for_any_length() -> None:
    torch.manual_seed(0)
    model = LSTMAutoencoder(AutoencoderConfig(n_inputs=12)).eval()
    assert (model.enc1.hidden_size, model.enc2.hidden_size) == (32, 16)
    assert (model.dec1.hidden_size, model.dec2.hidden_size) == (16, 32)
    with torch.inference_mode():
        for steps in (24, 7):
            x = torch.randn(3, steps, 12)
            reconstruction = model(x)
            assert reconstruction.shape == (3, steps, 12)
            assert LSTMAutoencoder.errors(x, reconstruction).shape == (3, 12)
