"""Fork-join parallel regions over shared arrays (granny's OpenMP for numpy); see api.py."""

from .api import Context, Team, close_teams, parallel, parallel_for, team

__all__ = ["Context", "Team", "close_teams", "parallel", "parallel_for", "team"]
