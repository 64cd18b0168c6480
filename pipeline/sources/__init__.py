"""Readers of real source formats, one module per format, grouped by kind.

``genome/`` (SGD GFF3, GenBank, coding sequences), ``interactions/`` (STRING, DANGO,
BioGRID, TFLink, regulatory tables, GO co-annotation), ``phenotypes/`` (Kuzmin 2018/2020,
Costanzo 2016, and the shared table format), plus what they share: ``_io`` (decompressing
reads), ``_table`` (delimited tables with column aliases), ``download``.
"""
