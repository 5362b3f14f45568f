"""Profiles: pydantic v2 models of /etc/mip/<instance>.yaml and their loading (mip.yaml(5)).

``load_profile(path)`` returns a validated :data:`AnyProfile` or raises :class:`ProfileError`, whose
``problems`` are what ``mipd check`` prints; ``home_agent_settings`` turns a home-agent profile
into the engine's settings.
"""

from mipd.config.convert import ConversionError, foreign_agent_settings, home_agent_settings, mobile_node_settings
from mipd.config.errors import Problem, ProfileError
from mipd.config.loader import load_profile
from mipd.config.models import (
    ForeignAgentProfile,
    HomeAgentProfile,
    MobileNodeProfile,
    Profile,
    Tunnel,
    json_schema,
)
from mipd.config.rules import AnyProfile
from mipd.config.security import AgentAssociation, NodeAssociation

__all__ = [
    "AgentAssociation",
    "AnyProfile",
    "ConversionError",
    "ForeignAgentProfile",
    "HomeAgentProfile",
    "MobileNodeProfile",
    "NodeAssociation",
    "Problem",
    "Profile",
    "ProfileError",
    "Tunnel",
    "foreign_agent_settings",
    "home_agent_settings",
    "json_schema",
    "load_profile",
    "mobile_node_settings",
]
