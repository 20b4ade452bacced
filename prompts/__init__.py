"""Prompt templates shipped with flow-engine's built-in example flows (package data)."""
