"""Agents: the YAML schema, prompt templates and the loader."""

from parley.agents.errors import ConfigError
from parley.agents.loader import Agent, AgentError, AgentRegistry, load_agent, validate_paths
from parley.agents.prompts import PromptError, PromptLibrary, PromptTemplate
from parley.agents.spec import AgentSpec

__all__ = [
    "Agent", "AgentError", "AgentRegistry", "AgentSpec", "ConfigError", "PromptError", "PromptLibrary",
    "PromptTemplate", "load_agent", "validate_paths",
]
