"""Past one machine: a Triton Inference Server model repository (package) and a local Triton
server for an artifact (serve). tritonclient and PyTriton are the optional `serve` extra and are
imported lazily (msla_deploy.serve.deps)."""
