"""Reference models that train from the stream (outside the shipped library).

``models``: small, device-agnostic consumers of each batch format.
"""
