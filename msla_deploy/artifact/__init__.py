"""What is on disk: file names and metadata keys, the manifest, the reference bundle, and the
resolver from what a user points at to an Artifact. The bottom layer: torch-free, and it imports
nothing from the stages above it."""
