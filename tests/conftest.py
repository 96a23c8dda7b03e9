"""Shared fixtures: the planted demo data, built once per test session."""

from __future__ import annotations

import pytest

from dataaudit.demo import make_demo_inputs


@pytest.fixture(scope="session")
def demo_inputs():
    """scikit-learn digits with planted flips, duplicates, a bad slice and OOD items (see demo.py)."""
    return make_demo_inputs(seed=0)


@pytest.fixture(scope="session")
def demo_report(demo_inputs):
    import dataaudit

    # The probabilities' columns follow demo_inputs.classes, not the sorted label names.
    return dataaudit.audit(
        demo_inputs.table,
        demo_inputs.probs,
        demo_inputs.embeddings,
        classes=demo_inputs.classes,
    )


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory):
    """The demo inputs saved as files, as a user would pass them to `dataaudit run`."""
    from dataaudit.demo import write_demo_inputs

    folder = tmp_path_factory.mktemp("demo-inputs")
    paths = write_demo_inputs(folder, seed=0)
    return {name: str(path) for name, path in paths.items()}


@pytest.fixture(scope="session")
def dask_client():
    """One LocalCluster of 2 single-threaded worker processes for every Dask test of the session
    (starting worker processes costs seconds). Skips when distributed is not installed."""
    distributed = pytest.importorskip("distributed")

    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
