"""KPI rules: a metric of the monitoring over a window against a threshold, evaluated every
minute by Celery beat; a rule that holds fires its actions (retrain, route production
inputs to annotators, alert). Writes in ``services``, reads in ``selectors``."""
