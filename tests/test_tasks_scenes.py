"""The scene task: set A from an image folder (ImageFolder or flat), set H from a frame derivative's stim_file."""

import shutil

import numpy as np
import pytest
from PIL import Image

from b2m_neuro.derivative import Derivative
from b2m_neuro.errors import B2MError, TrainingError
from b2m_neuro.tasks.scenes import SceneTask, read_images
from scene_data import CARLA_SCENES, driving_derivative


@pytest.fixture(scope="module")
def derivative(tmp_path_factory):
    return driving_derivative(tmp_path_factory.mktemp("driving"))


def test_carla_scenes_in_imagefolder_layout_are_read_as_rgb():
    task = SceneTask(CARLA_SCENES)
    train, test = task.split()
    assert len(train) == 16 and len(test) == 8 and all(path.parent.name == "class1" for path in train + test)
    images = read_images(train)
    assert images.shape == (16, 3, 80, 160) and images.dtype == np.uint8
    with Image.open(train[3]) as original:
        assert original.mode == "RGBA"
        assert np.array_equal(images[3], np.asarray(original)[..., :3].transpose(2, 0, 1))


def test_a_flat_folder_is_split_by_test_fraction_and_limits_apply(tmp_path):
    for path in sorted((CARLA_SCENES / "train" / "class1").glob("*.png"))[:10]:
        shutil.copy(path, tmp_path / path.name)
    train, test = SceneTask(tmp_path, test_fraction=0.2).split()
    assert [p.name for p in train + test] == sorted(p.name for p in tmp_path.iterdir())
    assert len(test) == 2
    train, test = SceneTask(tmp_path, test_fraction=0.2, n_train=3, n_test=1).split()
    assert len(train) == 3 and len(test) == 1


def test_frames_come_from_the_bids_stimuli_with_their_embedding_rows(derivative):
    sessions = Derivative.open(derivative).datasets()
    data = SceneTask(CARLA_SCENES).prepare(sessions)
    embedding = sessions[0]["embedding"].values
    assert data.frames.shape == (len(embedding), 3, 80, 160) and data.latent_dim == embedding.shape[1]
    np.testing.assert_array_equal(data.brain, embedding)
    stim_file = sessions[0]["stim_file"].values[5]
    assert data.frame_files[5].endswith(stim_file) and "/stimuli/" in data.frame_files[5]
    with Image.open(data.frame_files[5]) as frame:
        assert np.array_equal(data.frames[5], np.asarray(frame.convert("RGB")).transpose(2, 0, 1))
    assert (data.n_inputs, data.image_size) == (3, (80, 160)) and data.test_images.shape[0] == 8


def test_a_frame_shown_twice_is_read_once_and_kept_for_the_next_run(derivative, monkeypatch):
    from b2m_neuro.tasks import scenes

    sessions = Derivative.open(derivative).datasets()
    twice = sessions[0].copy()
    twice["stim_file"] = ("frame", np.where(np.arange(twice.sizes["frame"]) == 1, twice["stim_file"].values[0],
                                            twice["stim_file"].values))
    twice.attrs.update(sessions[0].attrs)
    task = SceneTask(CARLA_SCENES)
    task.prepare([twice])  # reads what it has not read before
    read = []
    monkeypatch.setattr(scenes, "read_images", lambda files, **options: read.append(files))
    again = task.prepare([twice])
    assert read == []  # scenes and frames from the kept arrays
    np.testing.assert_array_equal(again.frames[1], again.frames[0])
    assert again.frame_files[1] == again.frame_files[0] and len(again.frames) == twice.sizes["frame"]


def test_an_empty_scenes_folder_is_a_clear_error(tmp_path):
    (tmp_path / "train" / "class1").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    with pytest.raises(TrainingError, match="no train images") as error:
        SceneTask(tmp_path).split()
    assert str(tmp_path / "train") in str(error.value)
    with pytest.raises(TrainingError, match="does not exist"):
        SceneTask(tmp_path / "nowhere").split()


def test_an_image_of_another_size_is_named(tmp_path):
    shutil.copytree(CARLA_SCENES, tmp_path / "scenes")
    odd = tmp_path / "scenes" / "test" / "class1" / "odd.png"
    Image.new("RGB", (64, 32)).save(odd)
    with pytest.raises(TrainingError, match="64 x 32 pixels") as error:
        SceneTask(tmp_path / "scenes").prepare([])
    assert str(odd) in str(error.value) and isinstance(error.value, B2MError)


def test_a_missing_referenced_frame_is_named(derivative, tmp_path):
    sessions = Derivative.open(derivative).datasets()
    stimuli = tmp_path / "stimuli"
    shutil.copytree(derivative.parent / "bids" / "stimuli", stimuli)
    missing = stimuli / str(sessions[0]["stim_file"].values[7])
    missing.unlink()
    with pytest.raises(TrainingError, match="frame 7 .* missing") as error:
        SceneTask(CARLA_SCENES, stimuli=stimuli).prepare(sessions)
    assert str(missing) in str(error.value) and "stim_file[7]" in str(error.value)


def test_frames_of_another_size_than_the_scenes_are_an_error(derivative, tmp_path):
    sessions = Derivative.open(derivative).datasets()
    scenes = tmp_path / "small"
    for split in ("train", "test"):
        (scenes / split).mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (80, 40)).save(scenes / split / f"{index}.png")
    with pytest.raises(TrainingError, match="size of the scenes"):
        SceneTask(scenes).prepare(sessions)


def test_bad_task_options_are_errors():
    with pytest.raises(TrainingError, match="pair_batch"):
        SceneTask(CARLA_SCENES, pair_batch=0)
    with pytest.raises(TrainingError, match="test_fraction"):
        SceneTask(CARLA_SCENES, test_fraction=1.5)
