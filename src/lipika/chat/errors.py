"""The chat API's refusals of what a request asks."""

from __future__ import annotations

from lipika.errors import BadRequest


class UnsupportedParameter(BadRequest):
    """A field the model's provider cannot honour (or that this API does not serve): refused,
    never dropped. `param` names the field; `details.provider` the provider."""

    code = "unsupported_parameter"
    should_retry = False


class UnknownParameter(BadRequest):
    """A field that is not part of OpenAI's chat completion request."""

    code = "unknown_parameter"
    should_retry = False


class InvalidParameter(BadRequest):
    """A field whose value cannot be used (a malformed image URL, tool arguments that are not
    a JSON object, a tool_choice naming no declared tool)."""

    code = "invalid_parameter"
    should_retry = False
