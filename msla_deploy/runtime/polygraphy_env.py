"""Polygraphy as validate uses it: imported on demand, quiet, and its failures turned into ours.

Polygraphy logs to stdout (which would corrupt `--json`) and reports fatal problems by raising
PolygraphyException after logging them; both are contained here so that every other module can
call Polygraphy as a plain library.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from ..errors import BadInput, MissingRuntime

# The comparison API validate uses (SimpleCompareFunc, CosineSimilarityCompareFunc, and
# compare_accuracy returning one AccuracyResult per function) is Polygraphy 0.53's.
MIN_VERSION = (0, 53)


def import_polygraphy():
    try:
        import polygraphy
    except ImportError as exc:
        raise MissingRuntime(
            f"validate runs models through Polygraphy, which is not installed ({exc})",
            "pip install 'polygraphy>=0.53' (part of the base install)",
        ) from None
    version = tuple(int(p) for p in polygraphy.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_VERSION:
        raise MissingRuntime(
            f"Polygraphy {polygraphy.__version__} is too old for validate",
            f"pip install 'polygraphy>={'.'.join(map(str, MIN_VERSION))}'",
        )
    return polygraphy


@contextmanager
def quiet_polygraphy(problem: str, fix: str, error=BadInput) -> Iterator[None]:
    """Silence Polygraphy's logger; a PolygraphyException becomes `error(problem: first line, fix)`."""
    import_polygraphy()
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.CRITICAL + 10):
        try:
            yield
        except PolygraphyException as exc:
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise error(f"{problem}: {first.strip()}", fix) from None
