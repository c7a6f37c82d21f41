"""Boards (data files), serial protocol, emulated boards, cross compiler, flashing.

Not built yet (issue: boards). At the bottom of the layering: no ML dependencies.
"""
