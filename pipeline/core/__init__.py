"""What every stage uses; imports no other pipeline package.

``errors`` (the error types and their one-line messages), ``atomic`` (staging folders and
atomic publish), ``buildkey`` (input hashing, build keys, up-to-date checks), ``inputs``
(input files with digests, the code version), ``paths`` (bundled samples, a build's
workspace), ``runner`` (how a stage step runs), ``options`` (config fields that know their
CLI option), ``ragged`` (CSR helpers), ``splitmix`` (the counter-based hash of splits and
sampling), ``genes`` (the gene index), ``edges`` (edge tables), ``perturbations`` (type
codes, strain-id parsing), ``zarr_store`` (writing arrays, opening published Zarr stores).
"""
