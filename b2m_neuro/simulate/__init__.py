"""Synthetic lab sessions with a known answer, for the demo and for known-answer tests.

``memory_session`` simulates spiking neurons during the memory-based goal-switching task;
``study_test_session`` and ``sternberg_session`` simulate study-test recognition and Sternberg
working memory with memory-selective neurons; ``driving_session`` simulates driving scenes with EEG.
"""

from b2m_neuro.simulate.driving import DrivingSession, driving_session
from b2m_neuro.simulate.memory import memory_session, memory_sessions
from b2m_neuro.simulate.recognition import sternberg_session, study_test_session

__all__ = ["memory_session", "memory_sessions", "study_test_session", "sternberg_session", "driving_session",
           "DrivingSession"]
