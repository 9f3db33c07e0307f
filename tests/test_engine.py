import dataclasses

import numpy as np
import pytest
import torch
from _reference_implementations.adam import ReferenceAdam
from test_models import UserNet, one_torch_thread  # noqa: F401 (autouse fixture)
from test_tasks import memory_sessions

from b2m_neuro.controls import shuffle_trials
from b2m_neuro.engine import HISTORY_VARIABLES, Run, StackedAdam, TrainConfig, auto_group_size, fit_runs, plan_groups
from b2m_neuro.errors import TrainingError
from b2m_neuro.models import get_model
from b2m_neuro.models.aligned import AlignedModel
from b2m_neuro.models.gru import ReferenceGRU
from b2m_neuro.stats import linear_cka, rsa_similarity
from b2m_neuro.tasks import MemoryTask
from b2m_neuro.transfer import transfer_loss

MEASURES = ["task_loss", "transfer_loss", "total_loss", "train_accuracy", "test_loss", "test_accuracy",
            "alignment_cka", "alignment_rsa"]


@pytest.fixture(scope="module")
def sessions():
    return memory_sessions(2, 4, n_time=8)


@pytest.fixture(scope="module")
def data(sessions):
    # every trial point paired: many rows per episode, so the alignment statistics are far from 0
    return MemoryTask(n_test=12, time_stride=2, pair="all").prepare(sessions)


def student(data, seed, *, hidden=8, dropout=0.3):
    torch.manual_seed(seed)
    network = get_model("gru", n_inputs=data.n_inputs, latent_dim=data.latent_dim, hidden_size=hidden, dropout=dropout)
    return AlignedModel(network, "embedding")


def config(**changes):
    return TrainConfig(**{"alpha": 0.1, "epochs": 3, "lr": 3e-3, "seed": 0, **changes})


def assert_same_history(actual, expected, rtol=1e-4, atol=1e-6):
    for name in MEASURES:
        np.testing.assert_allclose(actual[name].values, expected[name].values, rtol=rtol, atol=atol, err_msg=name)


# --- the contract -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, field",
    [({"alpha": 1.5}, "alpha"), ({"transfer": "cka"}, "transfer"), ({"reduction": "max"}, "reduction"),
     ({"epochs": 0}, "epochs"), ({"batch_size": 1.5}, "batch_size"), ({"lr": 0.0}, "lr, temperature, weight_decay")],
)
def test_a_bad_train_config_is_refused_naming_the_field(changes, field):
    with pytest.raises(TrainingError) as error:
        TrainConfig(**{"alpha": 0.1, **changes})
    assert error.value.field == field


def test_a_history_has_every_described_variable_per_epoch(data):
    [(history, _)] = fit_runs([Run(data, student(data, 0), config(epochs=2))], progress=False)
    assert list(history.data_vars) == list(HISTORY_VARIABLES) and list(history.epoch.values) == [1, 2]
    assert all(history[name].attrs["description"] == text for name, text in HISTORY_VARIABLES.items())


# --- Adam ---------------------------------------------------------------------------------------


LRS, DECAYS = [1e-2, 3e-3, 1e-1], [0.0, 1e-2, 0.5]


def adam_steps(dtype, single_run_step, n_steps=5):
    """StackedAdam over 3 runs and, per run, a single-run Adam given each step's gradients: both results."""
    torch.manual_seed(2)
    start = [torch.randn(3, 4, 5, dtype=dtype), torch.randn(3, 7, dtype=dtype)]
    stacked = [tensor.clone() for tensor in start]
    adam = StackedAdam(stacked, lr=LRS, weight_decay=DECAYS)
    singles = [[tensor[r].clone() for tensor in start] for r in range(3)]
    steppers = [single_run_step(params, lr, wd) for params, lr, wd in zip(singles, LRS, DECAYS)]
    for _ in range(n_steps):
        grads = [torch.randn_like(tensor) for tensor in start]
        adam.step(grads)
        for r, step in enumerate(steppers):
            step([grad[r].clone() for grad in grads])
    return stacked, [torch.stack([params[i] for params in singles]) for i in range(2)]


def torch_adam(params, lr, weight_decay):
    for param in params:
        param.requires_grad_()
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)

    def step(grads):
        for param, grad in zip(params, grads):
            param.grad = grad
        optimizer.step()
    return step


def reference_adam(params, lr, weight_decay):
    return ReferenceAdam(params, lr=lr, weight_decay=weight_decay).step


def test_stacked_adam_matches_torch_adam_per_run():
    ours, expected = adam_steps(torch.float32, torch_adam)
    for tensor, reference in zip(ours, expected):
        torch.testing.assert_close(tensor, reference.detach(), rtol=1e-6, atol=1e-7)


def test_stacked_adam_matches_the_reference_adam_per_run():
    ours, expected = adam_steps(torch.float64, reference_adam)
    for tensor, reference in zip(ours, expected):
        torch.testing.assert_close(tensor, reference, rtol=1e-12, atol=1e-14)


def test_stacked_adam_leaves_inactive_runs_untouched_even_with_nan_gradients():
    params = [torch.ones(2, 3)]
    adam = StackedAdam(params, lr=[0.1, 0.1], weight_decay=[0.0, 0.1])
    adam.step([torch.tensor([[1.0, 1.0, 1.0], [float("nan")] * 3])], active=torch.tensor([True, False]))
    assert torch.equal(params[0][1], torch.ones(3))
    assert torch.allclose(params[0][0], torch.full((3,), 0.9))  # first Adam step moves by lr


# --- the loop -----------------------------------------------------------------------------------


def reference_fit(data, model, cfg):
    """The single-run loop written plainly with nn.GRU and torch.optim.Adam (no dropout): the oracle."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train = {name: torch.as_tensor(getattr(data, f"train_{name}")) for name in ("inputs", "targets", "scored", "brain", "paired")}
    rng = np.random.default_rng(cfg.seed)
    history = {name: [] for name in MEASURES}
    for _ in range(cfg.epochs):
        order = rng.permutation(len(data.train_lengths))
        sums = np.zeros(5)
        batches = np.array_split(order, np.ceil(len(order) / cfg.batch_size))
        for rows in batches:
            steps = int(data.train_lengths[rows].max())
            inputs, targets, scored, brain, paired = (train[name][rows, :steps] for name in train)
            outputs, embedding = model(inputs)
            task = ((outputs[scored] - targets[scored]) ** 2).mean()
            brain_loss = transfer_loss(cfg.transfer, brain[paired], embedding[paired], temperature=cfg.temperature,
                                       reduction=cfg.reduction)
            total = (1 - cfg.alpha) * task + cfg.alpha * brain_loss
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            correct = ((outputs[scored] > 0) == (targets[scored] > 0)).sum()
            sums += [task.item(), brain_loss.item(), total.item(), correct.item(), scored.sum().item()]
        with torch.no_grad():
            outputs = model(torch.as_tensor(data.test_inputs))[0]
            scored = torch.as_tensor(data.test_scored)
            targets = torch.as_tensor(data.test_targets)[scored]
            test_loss = float(((outputs[scored] - targets) ** 2).mean())
            test_accuracy = float(((outputs[scored] > 0) == (targets > 0)).float().mean())
            layer, brain = model(train["inputs"])[1][train["paired"]].numpy(), train["brain"][train["paired"]].numpy()
        alignment = [linear_cka(layer, brain), rsa_similarity(layer, brain)]
        for name, value in zip(MEASURES, [*sums[:3] / len(batches), sums[3] / sums[4], test_loss, test_accuracy, *alignment]):
            history[name].append(value)
    return history


@pytest.mark.parametrize("batch_size", [1, 3])
def test_one_run_reproduces_the_plain_single_run_loop(data, batch_size):
    cfg = config(batch_size=batch_size, weight_decay=1e-3, alpha=0.3, seed=4)
    expected = reference_fit(data, student(data, 4, dropout=0.0), cfg)
    trained = student(data, 4, dropout=0.0)
    [(history, diverged)] = fit_runs([Run(data, trained, cfg)], progress=False)
    assert not diverged and list(history.epoch.values) == [1, 2, 3]
    for name in MEASURES:
        np.testing.assert_allclose(history[name].values, expected[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert (np.diff(history.wall_time.values) > 0).all()


def mixed_runs(data, sessions):
    """Five different runs: seeds, alphas, transfer losses, lr, weight decay, negatives from other
    episodes, and a shuffled teacher."""
    shuffled = MemoryTask(n_test=12, time_stride=2).prepare(shuffle_trials(sessions, seed=7))
    settings = [(data, config(seed=0, alpha=0.0)),
                (data, config(seed=1, alpha=0.1, transfer="latent", weight_decay=1e-2)),
                (shuffled, config(seed=7, alpha=0.5)),
                (data, config(seed=3, alpha=0.05, lr=1e-2, transfer="contrastive-cosine", reduction="sum")),
                (data, config(seed=4, alpha=0.5, transfer="contrastive-cosine", negatives=16))]
    return [Run(task_data, student(task_data, cfg.seed), cfg) for task_data, cfg in settings]


def test_batched_runs_give_the_histories_of_runs_trained_one_at_a_time(data, sessions):
    together = mixed_runs(data, sessions)
    assert plan_groups(together, group_size=5) == [[0, 1, 2, 3, 4]]
    batched = fit_runs(together, group_size=5, progress=False)
    alone = [fit_runs([run], progress=False)[0] for run in mixed_runs(data, sessions)]
    for (history, diverged), (expected, expected_diverged), run in zip(batched, alone, together):
        assert diverged == expected_diverged is False
        assert_same_history(history, expected, rtol=1e-5)
    # the students hold their trained weights, and different runs really differ
    weights = [run.student.model.gru.weight_hh_l0.detach() for run in together]
    assert not torch.allclose(weights[0], weights[1])
    assert not np.allclose(batched[0][0].test_loss, batched[1][0].test_loss)


def test_nn_gru_backend_gives_the_same_histories_as_the_stacked_gru(data, sessions):
    stacked = fit_runs(mixed_runs(data, sessions)[:2], backend="stacked", progress=False)
    reference = fit_runs(mixed_runs(data, sessions)[:2], backend="nn.GRU", progress=False)
    for (history, _), (expected, _) in zip(stacked, reference):
        assert_same_history(history, expected)


def test_dropout_masks_depend_on_the_seed_only(data):
    first, again, other = (fit_runs([Run(data, student(data, 0), config(seed=seed))], progress=False)[0][0]
                           for seed in (5, 5, 6))
    assert_same_history(first, again, rtol=0, atol=0)
    assert not np.allclose(first.task_loss, other.task_loss)


def test_a_diverging_run_is_stopped_without_touching_the_others(data):
    broken = dataclasses.replace(data, train_brain=np.full_like(data.train_brain, np.nan))
    configs = [config(seed=0), config(seed=1), config(seed=2, divergence_factor=0.5), config(seed=3)]
    datasets = [data, broken, data, data]

    def runs():
        return [Run(d, student(d, c.seed), c) for d, c in zip(datasets, configs)]

    together = runs()
    initial = together[1].student.model.gru.weight_hh_l0.detach().clone()
    outcomes = fit_runs(together, group_size=4, progress=False)
    assert [diverged for _, diverged in outcomes] == [False, True, True, False]
    assert np.isnan(outcomes[1][0].task_loss).all()  # NaN loss in the first batch: no epoch completed
    assert torch.equal(together[1].student.model.gru.weight_hh_l0.detach(), initial)  # never updated
    factor_history = outcomes[2][0]  # its first epoch ends far above half its first loss: stopped there
    assert np.isfinite(factor_history.task_loss[0]) and np.isnan(factor_history.task_loss[1:]).all()
    assert factor_history.attrs["diverged"] == 1
    for index in (0, 3):
        expected = fit_runs([runs()[index]], progress=False)[0][0]
        assert_same_history(outcomes[index][0], expected, rtol=1e-5)


def test_user_modules_train_alone_and_results_keep_the_order_of_runs(data):
    user = AlignedModel(UserNet(width=data.latent_dim), "bottleneck")
    runs = [Run(data, student(data, 0), config(seed=0)), Run(data, user, config(seed=1)),
            Run(data, student(data, 2), config(seed=2))]
    assert plan_groups(runs, group_size=8) == [[0, 2], [1]]
    before = user.model.bottleneck.weight.detach().clone()
    outcomes = fit_runs(runs, progress=False)
    assert all(np.isfinite(history[MEASURES].to_array()).all() for history, _ in outcomes)
    assert not torch.equal(user.model.bottleneck.weight.detach(), before)
    solo = fit_runs([Run(data, student(data, 2), config(seed=2))], progress=False)[0][0]
    assert_same_history(outcomes[2][0], solo, rtol=1e-5)


# --- grouping -----------------------------------------------------------------------------------


def test_runs_are_grouped_by_shape_and_cut_to_the_group_size(data):
    small = [Run(data, student(data, s, hidden=8), config(seed=s)) for s in range(5)]
    large = [Run(data, student(data, s, hidden=12), config(seed=s)) for s in range(2)]
    other_batch = [Run(data, student(data, 9, hidden=8), config(seed=9, batch_size=2))]
    runs = [small[0], large[0], *small[1:], large[1], *other_batch]
    assert plan_groups(runs, group_size=2) == [[0, 2], [3, 4], [5], [1, 6], [7]]
    assert sorted(i for group in plan_groups(runs) for i in group) == list(range(len(runs)))


class ChangedGRU(ReferenceGRU):
    """A subclass may compute something else than the stacked group: trained alone."""


def test_networks_without_a_stacking_key_or_aligned_elsewhere_train_alone(data):
    subclass = AlignedModel(ChangedGRU(data.n_inputs, data.latent_dim, hidden_size=8), "embedding")
    other_layer = AlignedModel(get_model("gru", n_inputs=data.n_inputs, latent_dim=data.latent_dim, hidden_size=8),
                               "dropout")
    runs = [Run(data, student(data, 0), config()), Run(data, subclass, config()), Run(data, other_layer, config()),
            Run(data, student(data, 1), config())]
    assert plan_groups(runs, group_size=4) == [[0, 3], [1], [2]]


def test_automatic_group_size_follows_the_weights_per_run():
    sizes = {hidden: auto_group_size(hidden, 4, n_runs=1000) for hidden in (8, 128, 512, 4096)}
    assert sizes[8] >= sizes[128] >= sizes[512] >= sizes[4096] == 1
    assert sizes[128] > 1  # small GRUs are worth batching on any CPU cache
    assert auto_group_size(128, 4, n_runs=3) <= 3 and auto_group_size(64, 4, n_runs=1) == 1


@pytest.mark.parametrize("option", [{"backend": "fast"}, {"group_size": 0}, {"group_size": 1.5}])
def test_bad_engine_options_raise_training_errors(data, option):
    with pytest.raises(TrainingError) as error:
        fit_runs([Run(data, student(data, 0), config())], progress=False, **option)
    assert error.value.field in ("backend", "group_size")


def test_negatives_come_from_the_other_episodes_and_change_training(data, sessions):
    from b2m_neuro.engine import _NegativeBank, _TensorPool

    tensors = _TensorPool("cpu").tensors(data, "train")
    bank = _NegativeBank(tensors, data.train_lengths, config(negatives=500))
    for episode in (0, 3):
        own = {row.tobytes() for row in data.train_brain[episode][data.train_paired[episode]]}
        drawn = bank.sample(np.array([episode])).numpy()
        assert drawn.shape == (500, data.latent_dim)
        assert not any(row.tobytes() in own for row in drawn)  # none from the episode in the batch
        others = {row.tobytes() for r in range(len(data.train_lengths)) if r != episode
                  for row in data.train_brain[r][data.train_paired[r]]}
        assert {row.tobytes() for row in drawn} <= others
    again = _NegativeBank(tensors, data.train_lengths, config(negatives=500)).sample(np.array([0]))
    assert torch.equal(again, _NegativeBank(tensors, data.train_lengths, config(negatives=500)).sample(np.array([0])))
    with_negatives, without = (fit_runs([Run(data, student(data, 0), config(alpha=0.5, negatives=n))], progress=False)[0][0]
                               for n in (16, 0))
    assert not np.allclose(with_negatives.transfer_loss, without.transfer_loss)
    with pytest.raises(TrainingError, match="negatives apply to the contrastive"):
        config(transfer="latent", negatives=4)
    with pytest.raises(TrainingError, match="whole number"):
        config(negatives=-1)
