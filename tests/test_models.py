import pytest
import torch
from torch import nn

from b2m_neuro.errors import TrainingError
from b2m_neuro.models import get_model, known_models
from b2m_neuro.models.aligned import AlignedModel
from b2m_neuro.models.gru import ReferenceGRU


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks run many times faster on one thread than on two busy cores; restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_reference_gru_has_the_paper_architecture():
    model = get_model("gru", n_inputs=4, latent_dim=7)
    assert (model.gru.input_size, model.gru.hidden_size, model.gru.num_layers) == (4, 512, 1)
    assert model.dropout.p == 0.3
    assert (model.embedding.in_features, model.embedding.out_features) == (512, 7)
    assert (model.output.in_features, model.output.out_features) == (7, 1)
    assert model.align_layer == "embedding"


def test_gru_output_is_a_sigmoid_scaled_to_plus_minus_1_5():
    model = get_model("gru", n_inputs=4, latent_dim=3, hidden_size=8, dropout=0.0).eval()
    inputs = torch.rand(2, 5, 4)
    with torch.no_grad():
        model.output.bias.fill_(50.0)
        assert torch.allclose(model(inputs), torch.full((2, 5), 1.5))
        model.output.bias.fill_(-50.0)
        assert torch.allclose(model(inputs), torch.full((2, 5), -1.5))
        model.output.bias.fill_(0.0)
        model.output.weight.zero_()
        assert torch.allclose(model(inputs), torch.zeros(2, 5))


def test_aligned_model_returns_the_gru_embedding_layer():
    model = get_model("gru", n_inputs=4, latent_dim=3, hidden_size=8, dropout=0.0).eval()
    aligned = AlignedModel(model, model.align_layer)
    inputs = torch.rand(2, 5, 4)
    with torch.no_grad():
        outputs, embedding = aligned(inputs)
        expected = model.embedding(model.gru(inputs)[0])
    assert embedding.shape == (2, 5, 3) and torch.allclose(embedding, expected)
    assert torch.allclose(outputs, model(inputs))


def test_reference_grus_of_equal_shapes_share_a_stacking_key():
    def gru(hidden=8, dropout=0.3):
        return get_model("gru", n_inputs=4, latent_dim=3, hidden_size=hidden, dropout=dropout)

    assert gru().stacking_key() == gru(dropout=0.0).stacking_key() == (8, 4, 3)  # dropout is per run
    assert gru(hidden=12).stacking_key() != gru().stacking_key()
    assert gru().recurrent_size() == (8, 4)

    class Changed(ReferenceGRU):
        pass

    assert Changed(4, 3, hidden_size=8).stacking_key() is None  # may compute something else: trained alone


class UserNet(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.rnn = nn.LSTM(4, 6, batch_first=True)
        self.bottleneck = nn.Linear(6, width)
        self.readout = nn.Linear(width, 1)

    def forward(self, inputs):
        return self.readout(torch.relu(self.bottleneck(self.rnn(inputs)[0])))


def test_any_module_is_aligned_through_a_forward_hook():
    net = UserNet()
    inputs = torch.rand(2, 5, 4)
    outputs, embedding = AlignedModel(net, "bottleneck")(inputs)
    assert outputs.shape == (2, 5) and embedding.shape == (2, 5, 3)
    assert torch.allclose(embedding, net.bottleneck(net.rnn(inputs)[0]))
    with pytest.raises(TrainingError, match="bottleneck, readout"):
        AlignedModel(net, "encoder")
    with pytest.raises(TrainingError, match=r"\(batch, time, latent\)"):
        AlignedModel(net, "rnn")(torch.rand(2, 5, 4))  # an LSTM returns a tuple, not a tensor


def test_registry_refuses_unknown_names_and_options():
    assert "gru" in known_models()
    with pytest.raises(TrainingError, match="unknown model 'transformer'.*gru"):
        get_model("transformer", n_inputs=4, latent_dim=7)
    with pytest.raises(TrainingError, match="hidden_units"):
        get_model("gru", n_inputs=4, latent_dim=7, hidden_units=3)
