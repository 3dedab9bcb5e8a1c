import os
import uuid

import pytest

from apps.core.tasks import worker_roundtrip


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_task_goes_through_real_redis_to_a_real_worker_and_back(celery_worker):
    token = uuid.uuid4().hex
    result = worker_roundtrip.delay(token).get(timeout=30)
    assert result["token"] == token
    assert result["db_ok"] is True
    assert result["pid"] != os.getpid()  # it ran in the worker process, not here
    assert "core.worker_roundtrip" in celery_worker.log_text()
