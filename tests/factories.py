"""factory_boy factories for test data."""
import datetime as dt
import io

import factory
import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image

from annotation.models import Membership, Project, Sample


def png_bytes(value: int = 0, size: int = 8, seed: int | None = None) -> bytes:
    """Return a small grayscale PNG: class ``value`` is a bright block at a class-specific row."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size, size)) * 40).astype(np.uint8)
    row = (value * 2) % size
    pixels[row : row + 2, :] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")
    kind = Project.Kind.IMAGE
    labels = factory.LazyFunction(lambda: ["0", "1", "2"])
    batch_size = 10
    image_size = 8
    owner = factory.SubFactory(UserFactory)

    @factory.post_generation
    def owner_membership(obj, create, extracted, **kwargs):
        if create:
            Membership.objects.get_or_create(project=obj, user=obj.owner, defaults={"role": "owner"})


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.ANNOTATOR


class ImageSampleFactory(factory.django.DjangoModelFactory):
    """An image sample; pass ``true_label`` to draw an image of that class."""

    class Meta:
        model = Sample
        exclude = ["true_label"]

    project = factory.SubFactory(ProjectFactory)
    true_label = 0
    external_id = factory.Sequence(lambda n: f"s{n}")
    split = Sample.Split.POOL
    image = factory.LazyAttribute(
        lambda o: ContentFile(png_bytes(int(o.true_label), seed=hash(o.external_id) % 2**32),
                              name=f"{o.external_id}.png")
    )


def label_given(*, sample, annotator, value, **kwargs):
    """Label ``sample`` as an annotator the queue handed it to: lease it first, as
    ``sample_lease_next`` would, since held-out test samples take labels only that way."""
    from django.utils import timezone

    from annotation.models import Lease
    from annotation.services import label_submit

    now = timezone.now()
    Lease.objects.get_or_create(
        project_id=sample.project_id, sample_id=sample.pk, annotator_id=annotator.pk,
        defaults={"created_at": now, "expires_at": now + dt.timedelta(minutes=10)},
    )
    return label_submit(sample=sample, annotator=annotator, value=value, **kwargs)
