"""Work goes to a queue by kind (imports, training, scoring, default), so a long import
never waits in front of a retrain and scoring can run on machines of its own."""
import pytest
from celery import current_app
from django.conf import settings
from kombu import Queue

from tests.test_settings_broker import broker_settings, _connection  # noqa: F401


@pytest.mark.parametrize(("task", "queue"), [
    ("annotation.tasks.import_job_run_task", "imports"),
    ("learning.tasks.model_version_train_task", "training"),
    ("learning.tasks.pool_cold_start_task", "training"),
    ("learning.tasks.pool_score_chunk_task", "scoring"),
    ("serving.tasks.prediction_logs_prune_task", "default"),
])
def test_each_kind_of_work_is_routed_to_its_queue(task, queue):
    assert task in current_app.tasks, "a route names a task that does not exist"
    route = current_app.amqp.router.route({}, task)
    assert route["queue"].name == queue


def test_every_routed_queue_is_one_a_plain_worker_consumes():
    """A worker without -Q consumes every configured queue; a route to an unlisted queue
    would leave its tasks with nobody."""
    configured = {queue.name for queue in current_app.amqp.queues.values()}
    assert configured == set(settings.CELERY_TASK_QUEUE_NAMES)
    for route in settings.CELERY_TASK_ROUTES.values():
        assert route["queue"] in configured


def test_the_embedded_broker_delivers_each_queue_to_its_consumer(broker_settings):  # noqa: F811
    """The filesystem broker of `make run` keeps the queues apart too."""
    with _connection(broker_settings) as conn:
        queues = [Queue(name, routing_key=name) for name in ("imports", "scoring")]
        with conn.Producer() as producer:
            for queue in queues:
                producer.publish({"for": queue.name}, routing_key=queue.name,
                                 declare=[queue], serializer="json")
        for queue in queues:
            message = queue(conn.default_channel).get(no_ack=True)
            assert message is not None and message.payload == {"for": queue.name}
