"""Alembic's script directory for the store (env.py, script.py.mako, versions/).

Shipped as package data; :mod:`collab.store.schema` points Alembic here at run time,
and ``[tool.alembic]`` in pyproject.toml does the same for developers' ``alembic``
commands. See docs/storage.md, "Schema and migrations".
"""
