import math

import pytest
import torch
from test_models import one_torch_thread  # noqa: F401 (autouse fixture)

from b2m_neuro.errors import TrainingError
from b2m_neuro.transfer import contrastive_loss, latent_loss, total_loss, transfer_loss

BRAIN = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
MODEL = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
# S = BRAIN @ MODEL.T = [[1, 0], [2, 2]] at tau = 1
L0 = math.log(1 + math.exp(-1))  # -log(e^1 / (e^1 + e^0))
L1 = math.log(2)  # -log(e^2 / (e^2 + e^2))


def test_infonce_matches_hand_computed_values():
    assert contrastive_loss(BRAIN, MODEL, temperature=1.0, reduction="sum").item() == pytest.approx(L0 + L1, rel=1e-6)
    assert contrastive_loss(BRAIN, MODEL, temperature=1.0).item() == pytest.approx((L0 + L1) / 2, rel=1e-6)
    # tau = 0.5 doubles S: [[2, 0], [4, 4]]
    expected = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    assert contrastive_loss(BRAIN, MODEL, temperature=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_cosine_infonce_matches_hand_computed_values():
    # unit rows: brain [[1, 0], [0, 1]], model [[c, c], [0, 1]] with c = 1/sqrt(2): S = [[c, 0], [c, 1]]
    c = 1 / math.sqrt(2)
    expected = (math.log(1 + math.exp(-c)) + math.log(1 + math.exp(c - 1))) / 2
    assert contrastive_loss(BRAIN, MODEL, temperature=1.0, normalize=True).item() == pytest.approx(expected, rel=1e-6)
    assert transfer_loss("contrastive-cosine", BRAIN, MODEL, temperature=1.0, reduction="mean").item() == pytest.approx(expected, rel=1e-6)


def test_infonce_with_negatives_matches_hand_computed_values():
    # anchors: the model rows e1, e2; candidates: brain rows e1, e2 and the negative e1 (tau = 1)
    brain, negatives = torch.eye(2), torch.tensor([[1.0, 0.0]])
    expected = (-math.log(math.e / (2 * math.e + 1)) - math.log(math.e / (math.e + 2))) / 2
    loss = contrastive_loss(brain, torch.eye(2), temperature=1.0, negatives=negatives)
    assert float(loss) == pytest.approx(expected)
    scaled = contrastive_loss(brain, 3 * torch.eye(2), temperature=1.0, negatives=negatives, normalize=True)
    assert float(scaled) == pytest.approx(expected)
    assert float(transfer_loss("contrastive-cosine", brain, torch.eye(2), temperature=1.0, reduction="sum",
                               negatives=negatives)) == pytest.approx(2 * expected)
    with pytest.raises(TrainingError, match="negatives must be"):
        contrastive_loss(brain, brain, negatives=torch.ones(3))
    with pytest.raises(TrainingError, match="no negatives"):
        transfer_loss("latent", brain, brain, temperature=1.0, reduction="mean", negatives=negatives)


def test_infonce_is_at_chance_for_identical_rows_and_low_for_matched_rows():
    rows = torch.ones(5, 3)
    assert contrastive_loss(rows, rows).item() == pytest.approx(math.log(5), rel=1e-6)
    assert contrastive_loss(torch.eye(5) * 3, torch.eye(5) * 3).item() < 1e-6


def test_latent_and_total_losses_match_hand_computed_values():
    brain = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    model = torch.tensor([[1.0, 1.0], [2.0, 1.0]])
    assert latent_loss(brain, model).item() == pytest.approx((1 + 0 + 0 + 4) / 4)
    assert total_loss(torch.tensor(2.0), torch.tensor(4.0), alpha=0.25).item() == pytest.approx(0.75 * 2 + 0.25 * 4)
    assert total_loss(torch.tensor(2.0), torch.tensor(4.0), alpha=0.0).item() == 2.0


@pytest.mark.parametrize("name", ["contrastive", "contrastive-cosine", "latent"])
def test_one_sgd_step_moves_the_model_embedding_toward_the_brain(name):
    generator = torch.Generator().manual_seed(0)
    brain = torch.randn(16, 4, generator=generator)
    model = torch.randn(16, 4, generator=generator, requires_grad=True)
    optimizer = torch.optim.SGD([model], lr=0.05)

    def alignment():  # mean cosine similarity of each model row with its own brain row
        return torch.nn.functional.cosine_similarity(model, brain, dim=1).mean().item()

    before_loss, before_alignment = transfer_loss(name, brain, model, temperature=0.1, reduction="mean"), alignment()
    optimizer.zero_grad()
    before_loss.backward()
    optimizer.step()
    after_loss = transfer_loss(name, brain, model, temperature=0.1, reduction="mean").item()
    assert after_loss < before_loss.item()
    assert alignment() > before_alignment


def test_bad_input_is_refused():
    with pytest.raises(TrainingError, match="alpha"):
        total_loss(torch.tensor(1.0), torch.tensor(1.0), alpha=1.5)
    with pytest.raises(TrainingError, match="shape"):
        contrastive_loss(torch.ones(3, 2), torch.ones(3, 4))
    with pytest.raises(TrainingError, match="temperature"):
        contrastive_loss(BRAIN, MODEL, temperature=0.0)
    with pytest.raises(TrainingError, match="reduction"):
        contrastive_loss(BRAIN, MODEL, reduction="max")
    with pytest.raises(TrainingError, match="contrastive, contrastive-cosine, latent"):
        transfer_loss("cka", BRAIN, MODEL, temperature=0.1, reduction="mean")
