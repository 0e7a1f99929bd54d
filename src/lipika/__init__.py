"""Lipika: one metered backend for chat models and AI tools, sold on credits."""

__version__ = "0.1.0"
