"""The samples pipeline, page, export and API run on the same demo data as the engine's and the
warehouse's tests: their fixtures, shared."""
from tests.search.conftest import SubsetProbe, demo_subset  # noqa: F401
from tests.warehouse.conftest import fallback_for_search, local_rows_for, warehouse_data  # noqa: F401
