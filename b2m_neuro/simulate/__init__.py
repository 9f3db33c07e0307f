"""Synthetic lab sessions with a known answer, for the demo and for known-answer tests.

``memory_session`` simulates spiking neurons during the memory-based goal-switching task;
``driving_session`` simulates driving scenes with EEG.
"""

from b2m_neuro.simulate.driving import DrivingSession, driving_session
from b2m_neuro.simulate.memory import memory_session, memory_sessions

__all__ = ["memory_session", "memory_sessions", "driving_session", "DrivingSession"]
