"""OpenAPI description of the per-project token authentication."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ProjectTokenScheme(OpenApiAuthenticationExtension):
    target_class = "annotation.authentication.ProjectTokenAuthentication"
    name = "ProjectToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Per-project key: `Authorization: Token <key>` "
            "(create one with `manage.py create_token <slug>`).",
        }
