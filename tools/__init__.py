"""edgewatch's tools: evaluation, prompt authoring and validation, calibration reports, dataset export, doctor.

Tools may import the runtime (`pipeline`, `states`); the runtime never imports tools
(tests/test_architecture.py reads the import graph and fails when it does).
"""
