import numpy as np
import pytest
import xarray as xr

from b2m_neuro.adapters import FilterSpec, FixedWindow, ReactionTimeWindow, TeacherSpec, load_spikes
from b2m_neuro.convert import spikes_to_nwb
from b2m_neuro.embedding import embed, teacher_quality
from b2m_neuro.errors import EmbeddingError
from b2m_neuro.simulate import memory_session

N_TRIALS, N_TIME, LATENT = 90, 40, 4
MEMORY_COLUMNS = ("stimulus", "first_target", "second_target", "current_target", "correct_response", "response",
                  "correct", "reaction_time", "episode")  # fmt: skip


def planted(subject, *, seed, rotation=None, noise=0.3):
    """Embeddings whose post-onset trajectory depends on the stimulus; reaction time scales latent 2."""
    rng = np.random.default_rng(seed)
    stimulus = np.repeat([0, 1, 2], N_TRIALS // 3)
    rng.shuffle(stimulus)
    reaction_time = rng.uniform(0.4, 1.4, N_TRIALS)
    time = np.linspace(-1, 1, N_TIME)
    centres = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [-2, -2, 0, 0]], dtype=float)
    trajectory = np.stack([np.sin(np.pi * time), np.cos(np.pi * time), 0 * time, time], axis=-1)  # shared over sessions
    embedding = trajectory[None] + (time > 0)[None, :, None] * centres[stimulus][:, None, :]
    embedding[:, :, 2] += 3 * reaction_time[:, None]
    embedding = embedding + noise * rng.normal(size=embedding.shape)
    if rotation is not None:
        embedding = embedding @ rotation
    return xr.Dataset(
        {
            "embedding": (("trial", "time", "latent"), embedding.astype(np.float32)),
            "stimulus": ("trial", stimulus),
            "reaction_time": ("trial", reaction_time),
        },
        coords={"time": time},
        attrs={"subject": subject, "session": "1", "task": "memory"},
    )


def memory_embedding(seed, *, goal_gain=0.0, time=(-0.5, 0.5), goal_at=None, n_trials=120, latent=5):
    """A derivative-layout session of the simulated memory task whose embedding is noise, plus
    ``goal_gain`` on latent 0 (+ while the current target is the first candidate, - the second)
    at the time points ``goal_at`` (a boolean mask; default all)."""
    trials = memory_session(seed=seed, n_units=4, n_trials=n_trials).trials
    goal = np.where(trials["current_target"] == trials["first_target"], 1.0, -1.0)
    time = np.asarray(time, dtype=float)
    goal_at = np.ones(len(time), bool) if goal_at is None else goal_at
    embedding = np.random.default_rng(seed).normal(size=(n_trials, len(time), latent))
    embedding[:, goal_at, 0] += goal_gain * goal[:, None]
    return xr.Dataset(
        {"embedding": (("trial", "time", "latent"), embedding.astype(np.float32)),
         **{column: ("trial", trials[column].to_numpy()) for column in MEMORY_COLUMNS}},
        coords={"time": time},
        attrs={"subject": f"S{seed}", "session": "01", "task": "memory"},
    )  # fmt: skip


def goal_rows(report):
    return report.decoding[report.decoding["variable"] == "goal"].set_index("window")


def shuffled(ds, seed):
    rng = np.random.default_rng(seed)
    return ds.assign(stimulus=("trial", rng.permutation(ds["stimulus"].values)),
                     reaction_time=("trial", rng.permutation(ds["reaction_time"].values)))  # fmt: skip


def score(report, session, variable):
    row = report.decoding[(report.decoding["session"] == session) & (report.decoding["variable"] == variable)]
    return float(row["score"].iloc[0]), float(row["chance"].iloc[0])


def test_planted_signal_decodes_well_above_chance_and_shuffled_labels_do_not(tmp_path):
    rotation = np.linalg.qr(np.random.default_rng(9).normal(size=(LATENT, LATENT)))[0]
    sessions = [planted("A", seed=0), planted("B", seed=1, rotation=rotation), shuffled(planted("C", seed=2), seed=5)]
    report = teacher_quality(sessions, permutations=50, figure=tmp_path / "quality.png")
    accuracy, chance = score(report, "sub-A_ses-1", "stimulus")
    assert chance == pytest.approx(1 / 3) and accuracy >= 0.95
    assert score(report, "sub-B_ses-1", "stimulus")[0] >= 0.95  # a rotation keeps the information
    assert score(report, "sub-A_ses-1", "reaction_time")[0] >= 0.8  # R^2 of the planted linear code
    shuffled_accuracy, _ = score(report, "sub-C_ses-1", "stimulus")
    assert abs(shuffled_accuracy - 1 / 3) <= 0.15
    assert score(report, "sub-C_ses-1", "reaction_time")[0] <= 0.1
    assert set(report.decoding["metric"]) == {"balanced_accuracy", "r2"}
    assert report.decoding["n_samples"].eq(N_TRIALS).all()
    p_values = report.decoding.set_index(["session", "variable"])["p_value"]
    assert (p_values.loc[["sub-A_ses-1", "sub-B_ses-1"]] == 1 / 51).all()  # no permutation reaches the planted code
    assert (p_values.loc["sub-C_ses-1"] > 0.05).all()
    assert report.goal_by_time.empty and "goal" not in set(report.decoding["variable"])  # no memory-task columns


def test_consistency_is_high_for_shared_dynamics_and_low_for_noise():
    rotation = np.linalg.qr(np.random.default_rng(9).normal(size=(LATENT, LATENT)))[0]
    rng = np.random.default_rng(4)
    noise = planted("N", seed=3).copy()
    noise["embedding"] = (("trial", "time", "latent"), rng.normal(size=(N_TRIALS, N_TIME, LATENT)).astype(np.float32))
    report = teacher_quality([planted("A", seed=0), planted("B", seed=1, rotation=rotation), noise],
                             variables=["stimulus"], permutations=0)  # fmt: skip
    pairs = {(a, b): s for a, b, s in report.consistency.itertuples(index=False)}
    assert len(pairs) == 6
    assert pairs[("sub-A_ses-1", "sub-B_ses-1")] >= 0.9 and pairs[("sub-B_ses-1", "sub-A_ses-1")] >= 0.9
    assert pairs[("sub-N_ses-1", "sub-A_ses-1")] <= 0.3
    assert "cross-session consistency" in report.summary() and "stimulus" in report.summary()
    assert report.decoding["p_value"].isna().all() and report.decoding["score"].notna().all()  # permutations=0


def test_consistency_is_not_scored_when_a_linear_map_fits_any_embedding():
    report = teacher_quality([memory_embedding(0), memory_embedding(1)], variables=["stimulus"], permutations=0)
    assert report.consistency.empty  # 2 time points, 5 latents: any two sessions map onto each other exactly
    assert "each with more time points (or frames) than latent dimensions + 1" in report.summary()


def test_single_session_report_and_figure(tmp_path):
    report = teacher_quality([planted("A", seed=0)], permutations=20, figure=tmp_path / "figs" / "one.png")
    assert report.consistency.empty and np.isnan(report.mean_consistency)
    assert report.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report.figure.stat().st_size > 10_000
    assert "needs at least 2 sessions" in report.summary()
    table = report.table()
    assert list(table["variable"]) == ["stimulus", "reaction_time"]
    assert list(table["n_significant"]) == [1, 1] and list(table["n_sessions"]) == [1, 1]


def test_frames_decode_per_frame():
    rng = np.random.default_rng(0)
    condition = np.tile(["left", "right"], 50)
    embedding = rng.normal(size=(100, 3)) + np.where(condition == "left", 2.0, -2.0)[:, None]
    ds = xr.Dataset(
        {"embedding": (("frame", "latent"), embedding.astype(np.float32)), "condition": ("frame", condition),
         "stim_file": ("frame", [f"f{i}.png" for i in range(100)])},
        attrs={"subject": "01", "session": "", "task": "driving"},
    )  # fmt: skip
    report = teacher_quality([ds, ds.copy()], permutations=20)
    assert list(report.decoding["variable"].unique()) == ["condition"]  # 100 distinct files are not a class label
    assert set(report.decoding["window"]) == {"frame"}
    assert report.decoding["score"].min() >= 0.95
    assert report.mean_consistency >= 0.99


def test_unknown_variable_or_missing_embedding():
    with pytest.raises(EmbeddingError, match="no task variable 'goal'") as info:
        teacher_quality([planted("A", seed=0)], variables=["goal"])
    assert "stimulus" in info.value.fix
    with pytest.raises(EmbeddingError, match="no 'embedding'"):
        teacher_quality([planted("A", seed=0).drop_vars("embedding")])
    with pytest.raises(EmbeddingError, match="no embeddings"):
        teacher_quality([])
    for option, value in (("permutations", -1), ("folds", 1), ("permutations", 2.5)):
        with pytest.raises(EmbeddingError, match=f"{option} must be an integer") as info:
            teacher_quality([planted("A", seed=0)], **{option: value})
        assert info.value.field == option


@pytest.fixture(scope="module")
def coarse_teachers(tmp_path_factory):
    """Simulated sessions with and without goal information -> NWB -> a coarse spec -> 5 PCs.

    The spec: 1 s before stimulus onset in one bin, onset to response in one bin, no filter.
    """
    spec = TeacherSpec.preset("paper").replace(name="coarse-test", pre=FixedWindow(-1.0, 0.0, 1.0),
                                               post=ReactionTimeWindow(n_bins=1), filter=FilterSpec())  # fmt: skip
    folder = tmp_path_factory.mktemp("coarse")
    teachers = {}
    for informative in (True, False):
        recording = memory_session(seed=0, n_units=20, n_trials=120, goal_information=informative)
        rates = load_spikes(spikes_to_nwb(recording, folder / f"goal-{informative}.nwb"), spec, progress=False)
        teachers[informative] = embed([rates], method="pca", output_dimension=5, progress=False)
    return teachers


def test_goal_decodes_from_an_informative_simulated_teacher_only(coarse_teachers):
    informative = teacher_quality(coarse_teachers[True], permutations=100)
    goal = goal_rows(informative)
    assert list(goal.index) == ["trial", "pre", "post"]
    assert (goal["p_value"] < 0.05).all() and (goal["score"] > 0.6).all() and (goal["chance"] == 0.5).all()
    assert list(informative.goal_by_time["time"]) == [-0.5, 0.5]  # one row per time point (one bin each)
    assert (informative.goal_by_time["p_value"] < 0.05).all()
    assert "goal by time point, sub-S01_ses-01: p < 0.05 at 2/2 time points" in informative.summary()
    uninformed = teacher_quality(coarse_teachers[False], permutations=100)
    assert (goal_rows(uninformed)["p_value"] >= 0.05).all() and (uninformed.goal_by_time["p_value"] >= 0.05).all()
    stimulus = uninformed.decoding.set_index("variable").loc["stimulus"]
    assert stimulus["p_value"] < 0.05  # the stimulus tuning is kept without goal information


def test_no_information_teacher_is_rarely_significant_and_informative_one_always():
    null = [teacher_quality([memory_embedding(seed)], variables=["goal"], permutations=100) for seed in range(10)]
    p_values = np.array([[*goal_rows(report)["p_value"], *report.goal_by_time["p_value"]] for report in null])
    assert p_values.shape == (10, 5)  # trial, pre, post, 2 time points
    assert (p_values[:, 0] < 0.05).sum() <= 2  # at most 2 of 10 seeds significant, trial features
    assert (p_values < 0.05).mean() <= 0.1 and 0.35 <= p_values.mean() <= 0.65  # roughly uniform under the null
    informed = [teacher_quality([memory_embedding(seed, goal_gain=0.6)], variables=["goal"], permutations=100)
                for seed in range(10)]  # fmt: skip
    assert all((goal_rows(report)["p_value"] < 0.05).all() for report in informed)


def test_intervals_contain_scores_and_p_values_follow_the_permutation_count():
    report = teacher_quality([memory_embedding(3, goal_gain=0.6), planted("A", seed=0)], permutations=19)
    tables = [report.decoding, report.goal_by_time]
    for table in tables:
        assert ((table["ci_low"] <= table["score"]) & (table["score"] <= table["ci_high"])).all()
        assert np.allclose(table["p_value"] * 20, np.round(table["p_value"] * 20))  # (1 + k) / (1 + 19)
    assert goal_rows(report)["p_value"].eq(0.05).all()  # the smallest possible p-value with 19 permutations
    widths = report.decoding.set_index("variable").eval("ci_high - ci_low")
    assert 0.05 < widths["goal"].min() and widths["goal"].max() < 0.3  # about +-1.96 SE of 120 trials


def test_goal_windows_and_time_curve_follow_where_the_goal_is_coded():
    time = np.linspace(-1, 1, 6)
    late = teacher_quality([memory_embedding(1, goal_gain=1.0, time=time, goal_at=time > 0)], variables=["goal"],
                           permutations=50)  # fmt: skip
    windows = goal_rows(late)
    assert windows.loc["pre", "p_value"] > 0.05 and windows.loc["post", "p_value"] < 0.05
    curve = late.goal_by_time
    assert len(curve) == 6 and np.allclose(curve["time"], time)
    assert list(curve["p_value"] < 0.05) == [False, False, False, True, True, True]
    index = np.arange(6.0)  # no negative time: the first half is "pre"
    early = teacher_quality([memory_embedding(1, goal_gain=1.0, time=index, goal_at=index < 3)],
                            variables=["goal"], permutations=50)  # fmt: skip
    assert goal_rows(early).loc["pre", "p_value"] < 0.05 < goal_rows(early).loc["post", "p_value"]


def test_balanced_accuracy_is_at_chance_for_an_uninformative_imbalanced_variable():
    ds = memory_embedding(2).assign(rare=("trial", np.arange(120) % 10 == 0))  # 10 % True, no signal
    row = teacher_quality([ds], variables=["rare"], permutations=50).decoding.iloc[0]
    assert (row["metric"], row["chance"], row["n_classes"]) == ("balanced_accuracy", 0.5, 2)
    assert abs(row["score"] - 0.5) < 0.15 and row["p_value"] > 0.05  # plain accuracy would reward "always False"


def test_every_variable_is_summarized_and_drawn(tmp_path):
    report = teacher_quality([memory_embedding(seed, goal_gain=0.6) for seed in (4, 5, 6)], permutations=20,
                             figure=tmp_path / "quality.png")  # fmt: skip
    table = report.table()
    assert list(dict.fromkeys(table["variable"])) == [*MEMORY_COLUMNS, "goal"]
    assert list(table.loc[table["variable"] == "goal", "window"]) == ["trial", "pre", "post"]
    summary = report.summary()
    for variable, window in table[["variable", "window"]].itertuples(index=False):
        assert any(line.split()[:2] == [variable, window] for line in summary.splitlines())
    assert summary.count("goal by time point") == 3 and "3/3 sessions" in summary
    assert report.figure.stat().st_size > 30_000
    chosen = teacher_quality([memory_embedding(4)], variables=["stimulus"], permutations=0)
    assert chosen.goal_by_time.empty and list(chosen.decoding["variable"]) == ["stimulus"]
