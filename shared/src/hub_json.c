/*
 * The JSON hub protocol: one object per message (HubProtocol.md, "JSON
 * Encoding"). Decoding is strict about the fields the spec defines and
 * ignores properties it does not know, as ASP.NET Core does, so that
 * newer peers can add some.
 */

#include <string.h>

#include "hub_codec_internal.h"


static int sr_json_depth_ok(const json_t *value, int depth);
static int sr_json_type(const json_t *root, int *type, sr_error_t *err);
static int sr_json_fields(const json_t *root, sr_message_t *msg,
    sr_error_t *err);
static int sr_json_string(const json_t *root, const char *key,
    const char *name, int required, char **out, sr_error_t *err);
static int sr_json_headers(const json_t *root, sr_message_t *msg,
    const char *name, sr_error_t *err);
static int sr_json_invocation(const json_t *root, sr_message_t *msg,
    const char *name, sr_error_t *err);
static int sr_json_stream_ids(const json_t *root, sr_message_t *msg,
    const char *name, sr_error_t *err);
static int sr_json_completion(const json_t *root, sr_message_t *msg,
    sr_error_t *err);
static int sr_json_close(const json_t *root, sr_message_t *msg,
    sr_error_t *err);
static int sr_json_sequence_id(const json_t *root, sr_message_t *msg,
    const char *name, sr_error_t *err);
static int sr_json_build(const sr_message_t *msg, json_t *obj);
static int sr_json_set_string(json_t *obj, const char *key, const char *s);
static int sr_json_append(const char *data, size_t size, void *buf);


int
sr_hub_json_decode(const unsigned char *payload, size_t len,
    sr_message_t *msg, sr_error_t *err)
{
    int           rc, type;
    json_t       *root;
    json_error_t  jerr;

    root = json_loadb((const char *) payload, len, JSON_REJECT_DUPLICATES,
                      &jerr);
    if (root == NULL) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "message is not valid JSON: %s at byte %d",
                            jerr.text, jerr.position);
    }

    if (!json_is_object(root)) {
        rc = sr_error_set(err, SR_ERR_PROTOCOL,
                          "message is not a JSON object");
        goto done;
    }

    if (!sr_json_depth_ok(root, 1)) {
        rc = sr_error_set(err, SR_ERR_TOO_LARGE,
                          "message nests deeper than %d levels",
                          SR_HUB_MAX_DEPTH);
        goto done;
    }

    rc = sr_json_type(root, &type, err);
    if (rc != SR_OK) {
        goto done;
    }

    msg->type = type;

    rc = sr_json_fields(root, msg, err);

done:

    json_decref(root);

    return rc;
}


static int
sr_json_depth_ok(const json_t *value, int depth)
{
    size_t       i;
    const char  *key;
    json_t      *child;

    if (!json_is_object(value) && !json_is_array(value)) {
        return 1;
    }

    if (depth > SR_HUB_MAX_DEPTH) {
        return 0;
    }

    if (json_is_array(value)) {
        json_array_foreach(value, i, child) {
            if (!sr_json_depth_ok(child, depth + 1)) {
                return 0;
            }
        }

        return 1;
    }

    json_object_foreach((json_t *) value, key, child) {
        if (!sr_json_depth_ok(child, depth + 1)) {
            return 0;
        }
    }

    return 1;
}


static int
sr_json_type(const json_t *root, int *type, sr_error_t *err)
{
    json_t      *value;
    json_int_t   n;

    *type = 0;

    value = json_object_get(root, "type");

    if (value == NULL) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "message is missing 'type'");
    }

    if (!json_is_integer(value)) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "message 'type' is not an integer");
    }

    n = json_integer_value(value);

    if (n < SR_MSG_INVOCATION || n > SR_MSG_SEQUENCE) {
        return sr_error_set(err, SR_ERR_UNSUPPORTED,
                            "unknown message type %lld", (long long) n);
    }

    *type = (int) n;

    return SR_OK;
}


static int
sr_json_fields(const json_t *root, sr_message_t *msg, sr_error_t *err)
{
    int          rc;
    const char  *name;
    json_t      *item;

    name = sr_message_type_name(msg->type);

    if (msg->type <= SR_MSG_CANCEL_INVOCATION) {
        rc = sr_json_headers(root, msg, name, err);
        if (rc != SR_OK) {
            return rc;
        }

        rc = sr_json_string(root, "invocationId", name,
                            msg->type != SR_MSG_INVOCATION,
                            &msg->invocation_id, err);
        if (rc != SR_OK) {
            return rc;
        }
    }

    switch (msg->type) {

    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        return sr_json_invocation(root, msg, name, err);

    case SR_MSG_STREAM_ITEM:
        item = json_object_get(root, "item");

        if (item == NULL) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "StreamItem message is missing 'item'");
        }

        msg->item = json_incref(item);
        return SR_OK;

    case SR_MSG_COMPLETION:
        return sr_json_completion(root, msg, err);

    case SR_MSG_CLOSE:
        return sr_json_close(root, msg, err);

    case SR_MSG_ACK:
    case SR_MSG_SEQUENCE:
        return sr_json_sequence_id(root, msg, name, err);

    default:
        /* CancelInvocation has nothing more, Ping nothing at all */
        return SR_OK;
    }
}


/*
 * An optional string may also be null, which reads as absent: some
 * serializers write null for an unset field.
 */
static int
sr_json_string(const json_t *root, const char *key, const char *name,
    int required, char **out, sr_error_t *err)
{
    json_t  *value;

    value = json_object_get(root, key);

    if (value == NULL || (!required && json_is_null(value))) {
        if (required) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "%s message is missing '%s'", name, key);
        }

        return SR_OK;
    }

    if (!json_is_string(value)) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has a '%s' that is not a string",
                            name, key);
    }

    *out = sr_hub_strndup(json_string_value(value),
                          json_string_length(value));
    if (*out == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return SR_OK;
}


static int
sr_json_headers(const json_t *root, sr_message_t *msg, const char *name,
    sr_error_t *err)
{
    const char  *key;
    json_t      *headers, *value;

    headers = json_object_get(root, "headers");

    if (headers == NULL || json_is_null(headers)) {
        return SR_OK;
    }

    if (!json_is_object(headers)) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has 'headers' that are not an "
                            "object", name);
    }

    json_object_foreach(headers, key, value) {
        if (!json_is_string(value)) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "%s message has a header whose value is "
                                "not a string", name);
        }
    }

    /* an empty map carries nothing: keep the neutral form canonical */
    if (json_object_size(headers)) {
        msg->headers = json_incref(headers);
    }

    return SR_OK;
}


static int
sr_json_invocation(const json_t *root, sr_message_t *msg, const char *name,
    sr_error_t *err)
{
    int      rc;
    json_t  *arguments;

    rc = sr_json_string(root, "target", name, 1, &msg->target, err);
    if (rc != SR_OK) {
        return rc;
    }

    arguments = json_object_get(root, "arguments");

    if (arguments == NULL) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message is missing 'arguments'", name);
    }

    if (!json_is_array(arguments)) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has 'arguments' that are not an "
                            "array", name);
    }

    msg->arguments = json_incref(arguments);

    return sr_json_stream_ids(root, msg, name, err);
}


static int
sr_json_stream_ids(const json_t *root, sr_message_t *msg, const char *name,
    sr_error_t *err)
{
    size_t   i;
    json_t  *ids, *id;

    ids = json_object_get(root, "streamIds");

    if (ids == NULL || json_is_null(ids)) {
        return SR_OK;
    }

    if (!json_is_array(ids)) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has 'streamIds' that are not an "
                            "array", name);
    }

    json_array_foreach(ids, i, id) {
        if (!json_is_string(id)) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "%s message has a stream id that is not a "
                                "string", name);
        }
    }

    if (json_array_size(ids)) {
        msg->stream_ids = json_incref(ids);
    }

    return SR_OK;
}


static int
sr_json_completion(const json_t *root, sr_message_t *msg, sr_error_t *err)
{
    int      rc;
    json_t  *result;

    rc = sr_json_string(root, "error", "Completion", 0, &msg->error, err);
    if (rc != SR_OK) {
        return rc;
    }

    result = json_object_get(root, "result");

    if (result && msg->error) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "Completion message has both 'result' and "
                            "'error'");
    }

    /* a present null is a result, unlike an absent one */
    msg->result = json_incref(result);

    return SR_OK;
}


static int
sr_json_close(const json_t *root, sr_message_t *msg, sr_error_t *err)
{
    int      rc;
    json_t  *allow;

    rc = sr_json_string(root, "error", "Close", 0, &msg->error, err);
    if (rc != SR_OK) {
        return rc;
    }

    allow = json_object_get(root, "allowReconnect");

    if (allow == NULL || json_is_null(allow)) {
        return SR_OK;
    }

    if (!json_is_boolean(allow)) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "Close message has an 'allowReconnect' that is "
                            "not a boolean");
    }

    msg->allow_reconnect = json_is_true(allow);

    return SR_OK;
}


static int
sr_json_sequence_id(const json_t *root, sr_message_t *msg, const char *name,
    sr_error_t *err)
{
    json_t  *value;

    value = json_object_get(root, "sequenceId");

    if (value == NULL) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message is missing 'sequenceId'", name);
    }

    if (!json_is_integer(value) || json_integer_value(value) < 0) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has a 'sequenceId' that is not a "
                            "non-negative integer", name);
    }

    msg->sequence_id = (uint64_t) json_integer_value(value);

    return SR_OK;
}


int
sr_hub_json_encode(const sr_message_t *msg, sr_buf_t *out, sr_error_t *err)
{
    int      rc;
    size_t   old;
    json_t  *obj;

    obj = json_object();
    if (obj == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    old = out->len;

    rc = sr_json_build(msg, obj);

    if (rc == 0) {
        rc = json_dump_callback(obj, sr_json_append, out, JSON_COMPACT);
    }

    json_decref(obj);

    if (rc != 0) {
        out->len = old;
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return SR_OK;
}


/* Returns 0, or -1 when an allocation failed. */
static int
sr_json_build(const sr_message_t *msg, json_t *obj)
{
    int  t, rc;

    t = msg->type;

    rc = json_object_set_new(obj, "type", json_integer(t));

    if (t <= SR_MSG_CANCEL_INVOCATION) {
        if (json_object_size(msg->headers)) {
            rc |= json_object_set(obj, "headers", msg->headers);
        }

        rc |= sr_json_set_string(obj, "invocationId", msg->invocation_id);
    }

    switch (t) {

    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        rc |= sr_json_set_string(obj, "target", msg->target);
        rc |= json_object_set(obj, "arguments", msg->arguments);

        if (json_array_size(msg->stream_ids)) {
            rc |= json_object_set(obj, "streamIds", msg->stream_ids);
        }

        break;

    case SR_MSG_STREAM_ITEM:
        rc |= json_object_set(obj, "item", msg->item);
        break;

    case SR_MSG_COMPLETION:
        if (msg->error) {
            rc |= sr_json_set_string(obj, "error", msg->error);

        } else if (msg->result) {
            rc |= json_object_set(obj, "result", msg->result);
        }

        break;

    case SR_MSG_CLOSE:
        rc |= sr_json_set_string(obj, "error", msg->error);

        if (msg->allow_reconnect) {
            rc |= json_object_set_new(obj, "allowReconnect", json_true());
        }

        break;

    case SR_MSG_ACK:
    case SR_MSG_SEQUENCE:
        rc |= json_object_set_new(obj, "sequenceId",
                                  json_integer((json_int_t) msg->sequence_id));
        break;

    default:
        break;
    }

    return rc ? -1 : 0;
}


static int
sr_json_set_string(json_t *obj, const char *key, const char *s)
{
    if (s == NULL) {
        return 0;
    }

    return json_object_set_new(obj, key, json_string(s));
}


static int
sr_json_append(const char *data, size_t size, void *buf)
{
    return sr_buf_append(buf, data, size) == SR_OK ? 0 : -1;
}
