from django.db import models


class SubsetRefresh(models.Model):
    """One rebuild of the local subset from the warehouse: what it sampled, what it cost, how it ended.

    `running_key` holds the table name while the refresh runs and is cleared when it ends; its unique
    index is the lock that lets one refresh per table run at a time, across processes and hosts.
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    table = models.CharField(max_length=128)
    backend = models.CharField(max_length=16)
    method = models.CharField(max_length=16, help_text="hash, system or bernoulli")
    fraction = models.FloatField()
    trigger = models.CharField(max_length=16, default="command", help_text="command, beat or test")
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING, db_index=True)
    running_key = models.CharField(max_length=128, null=True, blank=True, unique=True)
    rows = models.BigIntegerField(null=True, blank=True)
    file_name = models.CharField(max_length=255, blank=True)
    file_bytes = models.BigIntegerField(null=True, blank=True)
    statement = models.TextField(blank=True, help_text="the sampling SQL (the UNLOAD on Athena)")
    engine_query_id = models.CharField(max_length=128, blank=True)
    s3_prefix = models.CharField(max_length=512, blank=True)
    downloaded_files = models.PositiveIntegerField(default=0)
    bytes_scanned = models.BigIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=10, default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"refresh #{self.pk} {self.table} {self.state}"
