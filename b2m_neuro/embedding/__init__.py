"""xarray recordings -> low-dimensional brain embeddings (CEBRA multi-session, PCA, identity).

:func:`embed` computes them, :func:`teacher_quality` says whether they are worth training with.
"""

from b2m_neuro.embedding.methods import embed
from b2m_neuro.embedding.quality import TeacherQuality, teacher_quality

__all__ = ["embed", "teacher_quality", "TeacherQuality"]
