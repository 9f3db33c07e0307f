# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 — A DANDI dandiset as a teacher: fetch, stream, embed, train
#
# `b2m_neuro.fetch` takes a dandiset (or an OpenNeuro dataset, or a local folder) by name, version
# and path globs, through the real dandi client: files land in a cache with a manifest, each
# checked against the archive's digest, and a second fetch transfers nothing. With
# `stream=True` nothing is downloaded: the adapter reads the units and trials tables of each NWB
# file over HTTP range requests.
#
# So that this tutorial runs anywhere (and in our tests) without the internet, it publishes two
# simulated study-test recognition sessions (tutorial 06's design) on a DANDI archive started on
# 127.0.0.1 (`LocalDandiArchive`, which answers the part of the DANDI API the dandi client uses).
# On the public archive, drop `server=` and name a real dandiset and its preset, e.g.
# `fetch("dandi:000004@0.220126.1852", include="sub-P42*/*.nwb")` with the `dandi000004` preset.
#
# The same from the command line:
#
# ```
# b2m-neuro fetch dandi:000004 --include 'sub-P42*/*.nwb'
# b2m-neuro embed ~/.cache/b2m_neuro/dandi/000004/0.220126.1852 --spec dandi000004 --method pca --out derivatives/b2m-pca
# b2m-neuro train derivatives/b2m-pca --task study_test --alpha 0.1 --out runs/b2m
# ```

# %%
from pathlib import Path

import torch

import b2m_neuro
from b2m_neuro.convert import spikes_to_nwb
from b2m_neuro.derivative import Derivative
from b2m_neuro.embedding import embed
from b2m_neuro.simulate import study_test_session
from b2m_neuro.sources.local_dandi import LocalDandiArchive

torch.set_num_threads(1)  # tiny networks train fastest on one CPU thread

# %% [markdown]
# ## A dandiset on a local archive
#
# Two participants, as the DANDI layout names their files (`sub-<id>/sub-<id>_ses-<id>_ecephys.nwb`),
# each in two versions: the real one, and its no-information twin (the same neurons with the
# memory signal switched off), published as a second dandiset.

# %%
design = dict(n_blocks=60, study_items=2, test_items=2, n_items=8, n_units=30)
Path("lab").mkdir(exist_ok=True)
dandisets = {"000801": {}, "000802": {}}
for seed, subject in ((0, "P1"), (1, "P2")):
    path = f"sub-{subject}/sub-{subject}_ses-1_ecephys.nwb"
    for dandiset, memory in (("000801", True), ("000802", False)):
        session = study_test_session(seed=seed, subject_id=subject, memory_information=memory, **design)
        dandisets[dandiset][path] = spikes_to_nwb(session, f"lab/{dandiset}-{subject}.nwb", overwrite=True)

archive = LocalDandiArchive().start()
for dandiset, files in dandisets.items():
    archive.add(dandiset, "0.261201.1200", files)
print(archive.api_url)

# %% [markdown]
# ## Fetch, then fetch again
#
# The version defaults to the most recent published one. The second call finds both files in the
# cache with the archive's digest and asks for no bytes.

# %%
fetched = b2m_neuro.fetch("dandi:000801", include="sub-*/*.nwb", server=archive.api_url, cache="cache",
                          progress=False)
print(fetched.source, fetched.root)
for file in fetched:
    print(f"  {file.path}  {file.size} bytes  sha256 {file.sha256[:12]}...")
sent = archive.blob_bytes_sent
again = b2m_neuro.fetch("dandi:000801", include="sub-*/*.nwb", server=archive.api_url, cache="cache", progress=False)
print("bytes sent by the second fetch:", archive.blob_bytes_sent - sent)

# %% [markdown]
# ## Stream instead of downloading
#
# The streamed teacher equals the downloaded one; its `source_file` is the archive's URL. These
# files hold spike times only, so the adapter reads nearly all of them; on DANDI most files also
# carry the raw voltage (many GB), which streaming leaves on the archive (README: the adapter read
# 1.1 MB of a 129 MB file).

# %%
remote = b2m_neuro.fetch("dandi:000801", include="sub-P1/*.nwb", stream=True, server=archive.api_url,
                         progress=False)
sent = archive.blob_bytes_sent
streamed = b2m_neuro.load_spikes(remote.files[0], "recognition", progress=False)
local = b2m_neuro.load_spikes(fetched.files[0], "recognition", progress=False)
print(f"streamed {archive.blob_bytes_sent - sent} of {remote.files[0].size} bytes;",
      "same rates:", bool((streamed == local).all()), "| source:", streamed.attrs["source_file"])

# %% [markdown]
# ## Embed both teachers into derivatives
#
# The `recognition` preset takes, per image shown, the second before onset and the time the image
# was on screen (one mean each); the derivative records where its sessions came from (archive URL,
# version and sha256 of each file).

# %%
no_info = b2m_neuro.fetch("dandi:000802", server=archive.api_url, cache="cache", progress=False)


def derivative_of(files, name):
    rates = [b2m_neuro.load_spikes(file, "recognition", progress=False) for file in files]
    embedded = embed(rates, method="pca", output_dimension=7, task="recognition", progress=False)
    return Derivative.create(f"derivatives/b2m-{name}", embedded, method="pca",
                             params=embedded[0].attrs["embedding_params"], source_datasets=list(files),
                             overwrite=True, progress=False)


teacher, no_information = derivative_of(fetched, "pca"), derivative_of(no_info, "pca-noinfo")
print(teacher.summary())
print(teacher.description["SourceDatasets"][0])
archive.stop()

# %% [markdown]
# ## Train the student on the study-test task
#
# The student sees each episode's study images, a "test begins" marker, then the test images, and
# answers old or new; test episodes are drawn from the rule and none was seen by a participant.
# One seed each here (tutorial 02 and `b2m_neuro.sweep` show how to compare conditions properly).

# %%
small = dict(task="study_test", episode="episode", hidden_size=32, dropout=0.0, lr=3e-2, batch_size=8, epochs=20, seed=0,
             n_test=100, transfer="contrastive-cosine", progress=False)
runs = {
    "no brain (alpha = 0)": b2m_neuro.train(teacher, alpha=0.0, **small),
    "B2M (alpha = 0.1)": b2m_neuro.train(teacher, alpha=0.1, **small),
    "no-information teacher (alpha = 0.1)": b2m_neuro.train(no_information, alpha=0.1, **small),
}
for name, result in runs.items():
    print(f"{name:>38}: {result.summary()}")
