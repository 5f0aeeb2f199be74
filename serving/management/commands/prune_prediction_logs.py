"""Delete raw prediction logs past their retention; the per-minute rollups stay."""
from django.core.management.base import BaseCommand

from serving.retention import PRUNE_BATCH_ROWS, prediction_logs_prune


class Command(BaseCommand):
    help = ("Delete prediction-log rows older than PREDICTION_LOG_RETENTION_DAYS (or --days), "
            "in batches; monitoring rollups are kept.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None)
        parser.add_argument("--batch", type=int, default=PRUNE_BATCH_ROWS)

    def handle(self, *args, days, batch, **options):
        deleted = prediction_logs_prune(days=days, batch_rows=batch)
        self.stdout.write(f"{deleted} prediction log row(s) deleted")
