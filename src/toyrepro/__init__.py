"""toyrepro: toy-scale, honest reproductions of language-model papers.

`toyrepro.run(name, scale=..., seed=..., overrides=[...], **key__path=value)` runs one
experiment from Python and returns its Scorecard (see `toyrepro/api.py`);
`toyrepro.experiments()` lists the registered experiments by name.
"""

__version__ = "0.1.0"


def run(name: str, *args, **kwargs):
    """Run experiment `name` and return its Scorecard; see `toyrepro.api.run`."""
    from toyrepro.api import run as _run

    return _run(name, *args, **kwargs)


def experiments():
    """Registered experiments by name (this package's and installed plugins')."""
    from toyrepro.core.experiment import experiments as _experiments

    return _experiments()
