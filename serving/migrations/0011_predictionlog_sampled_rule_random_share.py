"""A rule's random share of a route, drawn for live accuracy: `Rule.random_share`, the
rows it drew (`PredictionLog.sampled`) and their labels' source (`sampled`)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('serving', '0010_feedback_source_rule_no_data'),
    ]

    operations = [
        migrations.AddField(
            model_name='predictionlog',
            name='sampled',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name='rule',
            name='random_share',
            field=models.FloatField(default=0.0),
        ),
        migrations.AlterField(
            model_name='predictionlog',
            name='feedback_source',
            field=models.CharField(blank=True, choices=[('client', 'Client'), ('routed', 'Routed'), ('sampled', 'Sampled')], db_default='', default='', max_length=10),
        ),
    ]
