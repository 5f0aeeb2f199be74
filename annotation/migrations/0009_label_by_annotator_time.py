"""Index labels by (annotator, created_at): the annotators page reads each member's labels
of a time window without reading their whole history."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0008_queue_functions_test_needs_lease'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name='label',
            index=models.Index(fields=['annotator', 'created_at'], name='label_by_annotator_time'),
        ),
    ]
