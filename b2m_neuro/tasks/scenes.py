"""Scene reconstruction with two training sets: :class:`SceneTask`.

The VAE student (:mod:`b2m_neuro.models.vae`) learns to reconstruct driving scenes while its latent
mean is pulled toward the EEG embedding of the frames participants saw. The two sets differ because
the model's scenes and the participants' frames do not match one to one:

- **Set A, the model's own scenes**: any image folder. With ``train/`` and ``test/`` subfolders the
  split is the folder's; otherwise the last ``test_fraction`` of the (sorted) images are the test
  set. Each of these folders holds the images directly (flat) or in class subfolders (the
  torchvision ImageFolder layout, as the CARLA scenes: ``train/class1/*.png``). RGBA and grey
  images are read as RGB. The task loss (reconstruction + KL) is computed on A, the test loss is
  the reconstruction MSE on A's test images.
- **Set H, the participants' frames**: every frame an EEG derivative references (its ``stim_file``
  per frame, relative to the BIDS dataset's ``stimuli/`` folder), paired with that frame's
  embedding row. The stimuli folder is found from each session's ``source_file`` (the BIDS EEG
  recording the embedding was computed from: the nearest parent holding
  ``dataset_description.json``), or given as ``stimuli=``. The latent transfer loss is computed on H.

All images, of both sets, must have one size; they are kept as ``uint8`` so that the 12,000
reference scenes take 460 MB, not 1.8 GB. Set A is read once per process for the same files (the
runs of a sweep share it); a scene file changed on disk meanwhile is not read again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from b2m_neuro._util.progress import track
from b2m_neuro.errors import TrainingError

__all__ = ["SceneTask", "SceneData", "read_images", "IMAGE_SUFFIXES", "DEFAULT_PAIR_BATCH"]

#: File name endings read as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Frame/EEG pairs per step for the latent transfer loss (the reference).
DEFAULT_PAIR_BATCH = 256
_NO_FRAME = "n/a"


@dataclass
class SceneData:
    """The arrays the scene training loop consumes.

    ``train_images``, ``test_images`` (set A) and ``frames`` (set H) are ``uint8 (n, channels,
    height, width)``; ``brain (n_frames, latent)`` float32 is the embedding row of each frame;
    ``frame_files`` the file each frame was read from.
    """

    train_images: np.ndarray
    test_images: np.ndarray
    frames: np.ndarray
    brain: np.ndarray
    frame_files: list[str]

    @property
    def n_inputs(self) -> int:
        """Image channels."""
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    @property
    def latent_dim(self) -> int:
        return int(self.brain.shape[1])


class SceneTask:
    """Scene reconstruction on an image folder (set A) with the derivative's frames (set H).

    Parameters
    ----------
    scenes
        The image folder of set A (see the module docstring for the layouts).
    stimuli
        The BIDS ``stimuli/`` folder the derivative's ``stim_file`` values are relative to; ``None``:
        found from each session's ``source_file``.
    n_train, n_test
        Use only the first ``n`` training / test images (sorted by path); ``None``: all.
    test_fraction
        For a folder without ``train/`` and ``test/``: the fraction of images held out for testing.
    pair_batch
        Frame/EEG pairs per step for the latent transfer loss (all frames when there are fewer).
    """

    name = "scenes"

    def __init__(self, scenes: str | os.PathLike, *, stimuli: str | os.PathLike | None = None, n_train: int | None = None,
                 n_test: int | None = None, test_fraction: float = 0.15, pair_batch: int = DEFAULT_PAIR_BATCH) -> None:
        for field, value in (("n_train", n_train), ("n_test", n_test), ("pair_batch", pair_batch)):
            if value is not None and (int(value) != value or value < 1):
                raise TrainingError(f"{field} must be a positive integer, got {value}", field=field,
                                    fix=f"pass {field}=1 or more" + ("" if field == "pair_batch" else ", or None for all"))
        if not 0 < test_fraction < 1:
            raise TrainingError(f"test_fraction must lie in (0, 1), got {test_fraction}", field="test_fraction",
                                fix="pass e.g. 0.15")
        self.scenes = Path(scenes)
        self.stimuli = None if stimuli is None else Path(stimuli)
        self.n_train, self.n_test = n_train, n_test
        self.test_fraction = float(test_fraction)
        self.pair_batch = int(pair_batch)

    def options(self) -> dict[str, Any]:
        """The task's options as JSON values (recorded with every run)."""
        return {"scenes": str(self.scenes.resolve()), "stimuli": None if self.stimuli is None else str(self.stimuli.resolve()),
                "n_train": self.n_train, "n_test": self.n_test, "test_fraction": self.test_fraction,
                "pair_batch": self.pair_batch}

    def prepare(self, sessions: Sequence[xr.Dataset], *, progress: bool = False) -> SceneData:
        """Read set A and set H (the sessions' frames and embedding rows) into :class:`SceneData`."""
        train_files, test_files = self.split()
        train = _kept_images(tuple(train_files), None, progress=progress)
        test = _kept_images(tuple(test_files), train.shape[1:], progress=progress)
        frame_files, brain = self._frames(sessions)
        distinct, shown = np.unique([str(path) for path in frame_files], return_inverse=True)  # a frame shown twice
        frames = _kept_images(tuple(map(Path, distinct)), train.shape[1:], progress=progress,
                              fix="give the participants' frames the size of the scenes (or resize the scenes)")
        return SceneData(train, test, frames[shown], brain, [str(path) for path in frame_files])

    def split(self) -> tuple[list[Path], list[Path]]:
        """The training and test image files of set A, limited by ``n_train`` and ``n_test``."""
        if not self.scenes.is_dir():
            raise TrainingError("the scenes folder does not exist", file=self.scenes, field="scenes",
                                fix="pass the folder of the model's training images (e.g. the CARLA scenes)")
        if (self.scenes / "train").is_dir() and (self.scenes / "test").is_dir():
            train, test = _image_files(self.scenes / "train"), _image_files(self.scenes / "test")
        else:
            files = _image_files(self.scenes)
            n_test = int(round(self.test_fraction * len(files)))
            if len(files) < 2 or not 0 < n_test < len(files):
                train, test = files, []
            else:
                train, test = files[:-n_test], files[-n_test:]
        for name, files in (("train", train), ("test", test)):
            if not files:
                raise TrainingError(f"the scenes folder has no {name} images ({', '.join(IMAGE_SUFFIXES)})",
                                    file=self.scenes / name if (self.scenes / name).is_dir() else self.scenes,
                                    field="scenes", fix="put images in train/ and test/ (flat or in class folders), "
                                                        "or at least 2 images in a flat folder")
        return train[: self.n_train], test[: self.n_test]

    def _frames(self, sessions: Sequence[xr.Dataset]) -> tuple[list[Path], np.ndarray]:
        files, rows = [], []
        for index, session in enumerate(sessions):
            if "stim_file" not in session or session["embedding"].dims != ("frame", "latent"):
                raise TrainingError(f"session {index} is not a frame embedding with a stim_file per frame",
                                    file=session.attrs.get("source_file"), field="stim_file",
                                    fix="embed EEG recorded with its frames (eeg_to_bids(frames=...), load_eeg, embed)")
            stimuli = self.stimuli or _stimuli_folder(session, index)
            stim_files = session["stim_file"].values.astype(str)
            shown = np.flatnonzero(stim_files != _NO_FRAME)
            for row in shown:
                path = stimuli / stim_files[row]
                if not path.is_file():
                    raise TrainingError(f"frame {row} of session {index} references a file that is missing",
                                        file=path, field=f"stim_file[{row}]",
                                        fix="restore the BIDS stimuli/ folder next to the recording, or pass stimuli=")
                files.append(path)
            rows.append(np.asarray(session["embedding"].values, np.float32)[shown])
        brain = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
        if not files:
            raise TrainingError("the derivative references no frames (every stim_file is n/a)", field="stim_file",
                                fix="convert the EEG with its frames (eeg_to_bids(frames=...)) before embedding")
        return files, brain


def read_images(files: Sequence[Path], *, expected: tuple[int, ...] | None = None, progress: bool = False,
                fix: str = "use images of one size") -> np.ndarray:
    """Read image files as RGB into ``uint8 (n, 3, height, width)``; all must have one size.

    ``expected``: the ``(3, height, width)`` they must have (else the first image's size).
    """
    from PIL import Image, UnidentifiedImageError

    images = None
    for index, path in enumerate(track(files, description="reading images", total=len(files), progress=progress)):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
        except (OSError, UnidentifiedImageError) as error:
            raise TrainingError(f"cannot read this image ({error})", file=path, field="image",
                                fix="replace or remove the file") from None
        if images is None:
            expected = expected or pixels.shape
            images = np.empty((len(files), *expected), np.uint8)
        if pixels.shape != tuple(expected):
            raise TrainingError(f"the image is {pixels.shape[2]} x {pixels.shape[1]} pixels, the others "
                                f"{expected[2]} x {expected[1]}", file=path, field="image size", fix=fix)
        images[index] = pixels
    return images


_KEPT_IMAGES: dict[tuple, np.ndarray] = {}  # (files, expected size) -> images, dropped oldest first
_KEPT_SETS = 6  # set A's training and test images and the participants' frames, for two studies


def _kept_images(files: tuple[Path, ...], expected: tuple[int, ...] | None, *, progress: bool,
                 fix: str = "use images of one size") -> np.ndarray:
    """:func:`read_images`, kept for the next run of a sweep (12,000 reference scenes take half a
    minute to read and 460 MB to hold; every run of a study uses the same ones, and the same
    frames). The array is shared: the training never writes to it."""
    key = (files, expected)
    if key not in _KEPT_IMAGES:
        _KEPT_IMAGES[key] = read_images(files, expected=expected, progress=progress, fix=fix)
        while len(_KEPT_IMAGES) > _KEPT_SETS:
            del _KEPT_IMAGES[next(iter(_KEPT_IMAGES))]
    return _KEPT_IMAGES[key]


def _image_files(folder: Path) -> list[Path]:
    """The images of ``folder``, directly in it or one level down (ImageFolder classes), sorted."""
    found = [path for pattern in ("*", "*/*") for path in folder.glob(pattern)
             if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _stimuli_folder(session: xr.Dataset, index: int) -> Path:
    """The ``stimuli/`` folder of the BIDS dataset the session's EEG came from."""
    source = session.attrs.get("source_file")
    if source:
        for parent in Path(str(source)).parents:
            if (parent / "dataset_description.json").is_file():
                return parent / "stimuli"
    raise TrainingError(f"cannot tell where the frames of session {index} are: its source recording {source!r} is "
                        "not inside a BIDS dataset", field="stimuli",
                        fix="pass stimuli='<bids root>/stimuli' (the folder the stim_file values are relative to)")
