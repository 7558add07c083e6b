"""Framework integrations, installed as ``drip.integrations``.

Each integration lives in its own module and imports its framework there, so
``import drip`` never pulls a framework in.
"""
