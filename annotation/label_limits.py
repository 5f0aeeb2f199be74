"""The bounds of one label as a person gives it, wherever they give it.

The labeling API's input serializer, the labeling page's form and (through the serializer)
the WSGI fast path in front of the API all take their limits from here.
"""
from annotation.models import Label

# The sample's primary key: a positive bigint (a larger number fails in the database).
SAMPLE_ID_MIN = 1
SAMPLE_ID_MAX = 2**63 - 1
# The width of the label column.
VALUE_MAX_LENGTH: int = Label._meta.get_field("value").max_length
# Time spent on a label, in milliseconds: at most a day (more is a clock or client error).
DURATION_MS_MIN = 0
DURATION_MS_MAX = 86_400_000
# The number of the model version whose suggestion was shown: a positive integer column.
VERSION_MIN = 1
VERSION_MAX = 2**31 - 1
