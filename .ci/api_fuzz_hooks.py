"""schemathesis hooks of the API fuzz run (.ci/api-fuzz.sh).

`valid_data_not_refused_as_malformed` is this run's form of schemathesis' positive data
acceptance. The built-in check wants a 2xx (or 401/403/404/409) for every request the schema
calls valid, but a schema cannot say "a valid OPAQUE message", "a signature by this key" or "a
padded size": the relay refuses such requests with a *semantic* 400 (e.g. `invalid_signature`),
which is the documented contract. What a schema-valid request must never get is a refusal as
*malformed*: that would mean the document promises a shape the relay does not parse.
"""

import schemathesis

# Error codes that mean "this request does not have the documented shape" (PROTOCOL.md §11.2).
MALFORMED = {
    "invalid_json",
    "invalid_path",
    "invalid_query",
    "invalid_base64",
    "invalid_length",
    "field_too_large",
    "invalid_id",
    "invalid_username",
    "unsupported_media_type",
    "payload_too_large",
    "bad_request",
}


@schemathesis.check
def valid_data_not_refused_as_malformed(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code not in (400, 413, 415):
        return None
    try:
        code = response.json()["error"]["code"]
    except Exception:  # noqa: BLE001 - any other body fails the conformance checks instead
        return None
    message = response.json()["error"].get("message", "")
    if code == "invalid_json" and "invalid type: floating point" in message:
        # JSON Schema's `integer` admits `330.0`; the relay's JSON reads integers only without a
        # fraction or exponent (PROTOCOL.md §11.1). A schema cannot state that difference.
        return None
    if code in MALFORMED:
        raise AssertionError(
            f"a request the schema calls valid was refused as malformed: "
            f"{response.status_code} {code}: {response.json()['error'].get('message', '')}"
        )
    return None
