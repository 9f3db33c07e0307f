import logging
import shutil

import pytest
import torch
from _reference_implementations.gru import reference_gru
from test_models import one_torch_thread  # noqa: F401 (autouse fixture)

from b2m_neuro.models import get_model, gru_kernel
from b2m_neuro.models.gru import ReferenceGRU
from b2m_neuro.models.stacked_gru import StackedReferenceGRUs, Workspace, stacked_gru

GRU_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
CPU = torch.device("cpu")
# Where there is no compiler the compiled loops' cases are skipped, and only there: the test that they
# are built where there is one fails otherwise.
NO_COMPILER = pytest.mark.skipif(shutil.which(gru_kernel.compiler()[0]) is None, reason="no C++ compiler: no compiled loops")
LOOPS = pytest.mark.parametrize("compiled", [pytest.param(True, marks=NO_COMPILER), False],
                                ids=["compiled loops", "torch loops"])


def stacked_weights(grus, dtype=torch.float32):
    return [torch.stack([getattr(g, name).detach() for g in grus]).to(dtype).requires_grad_() for name in GRU_NAMES]


def run_by_run(gru_of_run, inputs, lengths):
    """Run r's GRU on its first ``lengths[r]`` steps, zero-padded to the full length: ``(R, B, T, H)``."""
    steps = inputs.shape[2]
    return torch.stack([torch.nn.functional.pad(gru_of_run(r, inputs[r, :, :length]), (0, 0, 0, steps - length))
                        for r, length in enumerate(lengths)])


# --- stacked_gru -------------------------------------------------------------------------------


@LOOPS
@pytest.mark.parametrize("hidden", [5, 40])  # 40: the compiled products' 256-byte blocks of columns, and a remainder
@pytest.mark.parametrize("lengths", [None, [6, 2, 4], [1, 6, 3], [3, 2, 4]])  # the last: every run ends early
def test_stacked_gru_matches_the_reference_gru_outputs_and_gradients(lengths, hidden, compiled):
    torch.manual_seed(0)
    grus = [torch.nn.GRU(4, hidden, batch_first=True) for _ in range(3)]
    inputs = torch.randn(3, 2, 6, 4, dtype=torch.float64)
    weights, reference_weights = stacked_weights(grus, torch.float64), stacked_weights(grus, torch.float64)
    x, x_ref = inputs.clone().requires_grad_(), inputs.clone().requires_grad_()
    ours = stacked_gru(x, *weights, lengths=lengths, compiled=compiled)
    reference = run_by_run(lambda r, x_r: reference_gru(x_r, *(w[r] for w in reference_weights)), x_ref,
                           lengths or [6, 6, 6])
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(ours)
    (ours * upstream).sum().backward()
    (reference * upstream).sum().backward()
    for weight, expected, name in zip(weights, reference_weights, GRU_NAMES):
        torch.testing.assert_close(weight.grad, expected.grad, rtol=1e-10, atol=1e-12, msg=name)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


@LOOPS
@pytest.mark.parametrize("lengths", [None, [6, 2, 4]])
def test_stacked_gru_matches_nn_gru_outputs_and_gradients(lengths, compiled):
    torch.manual_seed(0)
    grus = [torch.nn.GRU(4, 5, batch_first=True) for _ in range(3)]
    inputs = torch.randn(3, 2, 6, 4)
    weights = stacked_weights(grus)
    x, x_ref = inputs.clone().requires_grad_(), inputs.clone().requires_grad_()
    ours = stacked_gru(x, *weights, lengths=lengths, compiled=compiled)
    reference = run_by_run(lambda r, x_r: grus[r](x_r)[0], x_ref, lengths or [6, 6, 6])
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    upstream = torch.randn_like(ours)
    (ours * upstream).sum().backward()
    (reference * upstream).sum().backward()
    for weight, name in zip(weights, GRU_NAMES):
        torch.testing.assert_close(weight.grad, torch.stack([getattr(g, name).grad for g in grus]), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-6)


@LOOPS
def test_a_workspace_reused_by_successive_passes_changes_nothing_and_guards_saved_activations(compiled):
    torch.manual_seed(1)
    grus = [torch.nn.GRU(4, 5, batch_first=True) for _ in range(3)]
    workspace = Workspace()
    for steps, lengths in ((6, [6, 2, 4]), (4, [1, 4, 3]), (6, None)):  # buffers reused, smaller and larger
        inputs = torch.randn(3, 2, steps, 4, dtype=torch.float64)
        fresh, reused = stacked_weights(grus, torch.float64), stacked_weights(grus, torch.float64)
        upstream = torch.randn(3, 2, steps, 5, dtype=torch.float64)
        (stacked_gru(inputs, *fresh, lengths=lengths, compiled=compiled) * upstream).sum().backward()
        reused_outputs = stacked_gru(inputs, *reused, lengths=lengths, workspace=workspace, compiled=compiled)
        (reused_outputs * upstream).sum().backward()
        for a, b in zip(fresh, reused):
            torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0)
    weights = stacked_weights(grus)
    first = stacked_gru(torch.randn(3, 2, 6, 4), *weights, workspace=workspace, compiled=compiled)
    stacked_gru(torch.randn(3, 2, 6, 4), *weights, workspace=workspace, compiled=compiled)  # overwrites first's activations
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.sum().backward()


def test_the_reference_gru_is_nn_gru():
    torch.manual_seed(4)
    gru = torch.nn.GRU(3, 4, batch_first=True)
    inputs = torch.randn(2, 5, 3)
    torch.testing.assert_close(reference_gru(inputs, *(getattr(gru, name) for name in GRU_NAMES)), gru(inputs)[0])


@LOOPS
@pytest.mark.parametrize("lengths", [None, [3, 1]])
def test_stacked_gru_gradients_pass_gradcheck(lengths, compiled):
    torch.manual_seed(1)
    grus = [torch.nn.GRU(2, 3, batch_first=True) for _ in range(2)]
    inputs = torch.randn(2, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    weights = stacked_weights(grus, torch.float64)
    assert torch.autograd.gradcheck(lambda x, *w: stacked_gru(x, *w, lengths=lengths, compiled=compiled),
                                    (inputs, *weights))


def test_the_compiled_loops_are_built_where_there_is_a_compiler_and_used_by_default():
    built = gru_kernel.load() is not None
    assert built == (shutil.which(gru_kernel.compiler()[0]) is not None)  # CI has one: there they must build
    torch.manual_seed(2)
    weights = stacked_weights([torch.nn.GRU(3, 16, batch_first=True) for _ in range(4)])
    inputs = torch.randn(4, 3, 9, 3)
    default, torch_loops = (stacked_gru(inputs, *weights, lengths=[9, 4, 7, 1], compiled=choice)
                            for choice in (None, False))
    if not built:
        torch.testing.assert_close(default, torch_loops, rtol=0, atol=0)
        return
    compiled = stacked_gru(inputs, *weights, lengths=[9, 4, 7, 1], compiled=True)
    torch.testing.assert_close(default, compiled, rtol=0, atol=0)
    torch.testing.assert_close(compiled, torch_loops, rtol=1e-5, atol=1e-6)
    assert not torch.equal(compiled, torch_loops)  # two implementations, their own rounding


def test_without_a_compiler_stacked_gru_says_so_once_and_runs_its_torch_loops(monkeypatch, caplog):
    torch.manual_seed(2)
    weights = stacked_weights([torch.nn.GRU(3, 4, batch_first=True) for _ in range(2)])
    inputs = torch.randn(2, 1, 5, 3)
    monkeypatch.setenv("CXX", "no-such-compiler")
    gru_kernel.load.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=gru_kernel.__name__):
            outputs = stacked_gru(inputs, *weights)
            stacked_gru(inputs, *weights)
        [record] = caplog.records  # said once: the outcome is kept for the process
        assert "compiled GRU loops are not available (no-such-compiler -O3" in record.getMessage()
        assert record.getMessage().endswith("the stacked GRU runs its torch loops")
        torch.testing.assert_close(outputs, stacked_gru(inputs, *weights, compiled=False), rtol=0, atol=0)
        with pytest.raises(ValueError, match="need a C.. compiler"):
            stacked_gru(inputs, *weights, compiled=True)
    finally:
        gru_kernel.load.cache_clear()  # the next caller builds them again, with the real compiler


# --- the group of reference GRUs -----------------------------------------------------------------


def networks(n_runs, hidden=5):
    torch.manual_seed(3)
    return [get_model("gru", n_inputs=4, latent_dim=3, hidden_size=hidden, dropout=0.0) for _ in range(n_runs)]


def group_of(nets, backend="stacked"):
    return ReferenceGRU.stack(nets, generators=[torch.Generator() for _ in nets], device=CPU, backend=backend)


@pytest.mark.parametrize("backend", ["stacked", "nn.GRU"])
def test_the_group_computes_what_each_network_computes(backend):
    nets = networks(3)
    group = group_of(nets, backend)
    assert isinstance(group, StackedReferenceGRUs)
    inputs = torch.randn(3, 2, 6, 4)
    outputs, embedding = group.forward(inputs, [6, 6, 6])
    for r, net in enumerate(nets):
        torch.testing.assert_close(embedding[r], net.embedding(net.gru(inputs[r])[0]))
        torch.testing.assert_close(outputs[r], net(inputs[r]))
    outputs, embedding = group.predict(inputs[:1], [2, 0], [1, 5])  # runs 2 and 0 at steps 1 and 5
    for row, r in enumerate([2, 0]):
        torch.testing.assert_close(outputs[row], nets[r](inputs[0])[:, [1, 5]])
        torch.testing.assert_close(embedding[row], nets[r].embedding(nets[r].gru(inputs[0])[0])[:, [1, 5]])


def test_the_group_writes_each_runs_weights_back_and_flags_non_finite_runs():
    nets = networks(2)
    before = [net.gru.weight_hh_l0.detach().clone() for net in nets]
    group = group_of(nets)
    with torch.no_grad():
        for weight in group.parameters:
            weight[1] += 1.0
    group.write_back()
    assert torch.equal(nets[0].gru.weight_hh_l0, before[0])
    assert torch.equal(nets[1].gru.weight_hh_l0, before[1] + 1.0)
    assert group.finite().tolist() == [True, True]
    with torch.no_grad():
        group.parameters[4][0, 0, 0] = float("nan")  # an embedding weight of run 0
    assert group.finite().tolist() == [False, True]


def test_prediction_with_sequence_lengths_skips_only_the_steps_past_each_sequence():
    nets = networks(2)
    group = group_of(nets)
    inputs = torch.randn(1, 3, 7, 4)
    lengths = [4, 7, 2]  # rows computed in the order 1, 0, 2; each to its own length
    steps = [0, 1, 3, 6]
    outputs, embedding = group.predict(inputs, [1, 0], steps, lengths)
    for row, r in enumerate([1, 0]):
        expected = nets[r](inputs[0])[:, steps]
        for b, length in enumerate(lengths):
            within = [i for i, step in enumerate(steps) if step < length]
            torch.testing.assert_close(outputs[row, b, within], expected[b, within])
        full = group.predict(inputs, [r], steps)[1][0]
        assert not torch.allclose(embedding[row, 2, -1], full[2, -1])  # row 2 ended at step 2: not computed
    # past every sequence's end, every row reads the zero state: the embedding layer's bias
    embedding = group.predict(inputs, [1, 0], [1, 6], [2, 3, 1])[1]
    for row, r in enumerate([1, 0]):
        torch.testing.assert_close(embedding[row, :, 1], nets[r].embedding.bias.detach().expand(3, -1))


def test_dropout_keeps_units_with_probability_one_minus_p_from_each_runs_own_generator():
    nets = networks(3)
    for net, p in zip(nets, (0.3, 0.0, 0.5)):
        net.dropout.p = p

    def scale(seeds, lengths):
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        group = StackedReferenceGRUs(nets, generators=generators, device=CPU, backend="stacked")
        return group._dropout_scale((3, 4, 50, 64), lengths)

    first = scale([1, 2, 3], [50, 20, 30])
    kept = first[0] > 0
    assert first[0].unique().tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert abs(kept.float().mean().item() - 0.7) < 0.02  # 12,800 units
    assert torch.equal(first[1], torch.ones(4, 50, 64))  # p = 0: nothing dropped
    assert torch.equal(first[2, :, 30:], torch.ones(4, 20, 64))  # past the run's own length: untouched
    assert abs((first[2, :, :30] > 0).float().mean().item() - 0.5) < 0.03  # p = 0.5 over its 30 steps
    again = scale([7, 9, 3], [44, 40, 30])  # run 2's mask: from its own generator and length only
    torch.testing.assert_close(again[2], first[2], rtol=0, atol=0)
    assert not torch.equal(scale([1, 2, 4], [50, 20, 30])[2], first[2])


def test_the_compiled_loops_refuse_buffers_that_do_not_fit_before_touching_memory():
    runs, batch, steps, width, size = 2, 1, 5, 3, 4
    inputs, w_input = torch.zeros(runs, batch, steps, width), torch.zeros(runs, width, 4 * size)
    bias, w_hidden_t = torch.zeros(runs, 1, 4 * size), torch.zeros(runs, size, 3 * size)
    gates, candidate = torch.zeros(steps, runs, batch, 3 * size), torch.zeros(steps, runs, batch, size)
    expected = r"hidden as a contiguous CPU torch.float32 tensor of shape \(6, 2, 1, 4\), got \(5"
    with pytest.raises(ValueError, match=expected):
        gru_kernel.forward(inputs, w_input, bias, w_hidden_t, torch.zeros(steps, runs, batch, size), gates, candidate,
                           [5, 3])
    hidden = torch.zeros(steps + 1, runs, batch, size)
    with pytest.raises(ValueError, match="one length in \\[0, 5\\] per run \\(2\\), got \\[6, 3\\]"):
        gru_kernel.forward(inputs, w_input, bias, w_hidden_t, hidden, gates, candidate, [6, 3])
    with pytest.raises(ValueError, match="take gates as a contiguous CPU torch.float32"):
        gru_kernel.forward(inputs, w_input, bias, w_hidden_t, hidden, gates.double(), candidate, [5, 3])
    with pytest.raises(ValueError, match=r"w_hidden as .* got \(2, 4, 12\)"):
        gru_kernel.backward(gates, gates, w_hidden_t, candidate, gates, [5, 3])
