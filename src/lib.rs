//! Unpublished root package: owns the workspace-level `tests/` and `examples/`.
