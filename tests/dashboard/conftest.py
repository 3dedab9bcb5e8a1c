from tests.subsets.conftest import built_dataset, dataset  # noqa: F401 - the same private demo data
