"""Taskmaster: PRD -> tasks.json planner."""
