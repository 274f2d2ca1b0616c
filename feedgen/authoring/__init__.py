"""Authoring: what an algorithm author uses to build, test and preview a plugin before publishing it: a store
builder, the contract check, the pytest plugin, the scaffold and the author's commands.
"""
